#!/usr/bin/env python3
"""Calls every GET operation of a Floriday Swagger description through the proxy with a
client generated from that description by an independent generator, and deserialises every
answer with the client's own models. Then runs one sync loop to its end.

    check.py --spec customers-api-2026v1.json --package floriday_customers_client \
             --base http://127.0.0.1:8080/customers-api-2026v1

Works with a swagger-codegen client (the published floriday-supplier-client) and with an
openapi-generator `python` client. Prints one line per failure and a closing
'N passed, N failed' line; exits non-zero on any failure.
"""
import argparse
import datetime
import importlib
import inspect
import json
import pkgutil
import re
import sys
import uuid


def normalised(name):
    return name.replace("_", "").lower()


def api_classes(package):
    """Every *Api class of the client's `api` package."""
    api_package = importlib.import_module(package + ".api")
    classes = []
    for info in pkgutil.iter_modules(api_package.__path__):
        module = importlib.import_module(package + ".api." + info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if name.endswith("Api") and cls.__module__ == module.__name__:
                classes.append(cls)
    return classes


def find_method(instances, operation_id):
    wanted = normalised(operation_id)
    for instance in instances:
        for name in dir(instance):
            if not name.startswith("_") and normalised(name) == wanted:
                return getattr(instance, name)
    return None


def parameter_names(method):
    """The client's snake_case names for the operation's parameters."""
    names = [p for p in inspect.signature(method).parameters if p not in ("self", "kwargs")]
    if any(p.kind == p.VAR_KEYWORD for p in inspect.signature(method).parameters.values()):
        # swagger-codegen: required parameters are positional, the rest only in `all_params`.
        source = inspect.getsource(getattr(method.__self__, method.__name__ + "_with_http_info"))
        match = re.search(r"all_params = \[([^\]]*)\]", source)
        if match:
            names += [n.strip().strip("'\"") for n in match.group(1).split(",") if n.strip()]
    return names


def value_for(parameter, spec, typed_dates):
    if parameter["name"] == "sequenceNumber":
        return 0
    kind = parameter.get("type")
    fmt = parameter.get("format")
    if parameter.get("enum"):
        return parameter["enum"][0]
    if kind == "array":
        return [value_for(dict(parameter["items"], name=parameter["name"]), spec, typed_dates)]
    if kind == "integer":
        return int(parameter.get("minimum", 1))
    if kind == "number":
        return float(parameter.get("minimum", 1))
    if kind == "boolean":
        return False
    if fmt == "uuid":
        return str(uuid.UUID(int=0x5B0D3C1E8F7A4E629D352C6A1F4B7E90))
    if fmt == "date-time":
        moment = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
        return moment if typed_dates else moment.isoformat()
    if fmt == "date":
        day = datetime.date(2026, 3, 1)
        return day if typed_dates else day.isoformat()
    if parameter.get("pattern"):
        return "1234"
    return "sandbox"


def arguments(operation, method, spec, typed_dates):
    names = {normalised(n): n for n in parameter_names(method)}
    kwargs = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] not in ("path", "query"):
            continue
        if parameter["in"] == "query" and not parameter.get("required"):
            continue
        # openapi-generator renames Python-reserved or type names: `date` becomes `var_date`.
        client_name = names.get(normalised(parameter["name"])) or names.get("var" + normalised(parameter["name"]))
        if client_name is None:
            raise LookupError("the client has no parameter for " + parameter["name"])
        kwargs[client_name] = value_for(parameter, spec, typed_dates)
    return kwargs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--package", required=True)
    parser.add_argument("--base", required=True, help="the proxy's URL plus the API's base path")
    args = parser.parse_args()

    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    client = importlib.import_module(args.package)
    configuration = client.Configuration()
    configuration.host = args.base
    api_client = client.ApiClient(configuration)
    instances = [cls(api_client) for cls in api_classes(args.package)]
    # openapi-generator's pydantic clients type date parameters; swagger-codegen's take strings.
    typed_dates = hasattr(client, "ApiResponse")

    passed, failures = 0, []
    sync_operation = None
    for path, item in sorted(spec["paths"].items()):
        operation = item.get("get")
        if operation is None:
            continue
        label = "GET " + path + " (" + operation["operationId"] + ")"
        method = find_method(instances, operation["operationId"])
        if method is None:
            failures.append(label + ": the client has no method for it")
            continue
        try:
            answer = method(**arguments(operation, method, spec, typed_dates))
        except Exception as error:  # every failure is reported, the walk goes on
            failures.append(label + ": " + type(error).__name__ + ": " + str(error).splitlines()[0][:300])
            continue
        schema = operation["responses"].get("200", {}).get("schema")
        if schema is not None and answer is None:
            failures.append(label + ": the client deserialised no body")
            continue
        if path.endswith("/sync/{sequenceNumber}") and sync_operation is None:
            sync_operation = (path, operation, method)
        passed += 1

    # A sync loop, as integrations run it: from 0 until the number asked from is the maximum.
    if sync_operation is not None:
        path, operation, method = sync_operation
        kwargs = arguments(operation, method, spec, typed_dates)
        sequence_name = next(n for n in kwargs if normalised(n) == "sequencenumber")
        limit_name = next((n for n in parameter_names(method) if normalised(n) in ("limit", "limitresult")), None)
        if limit_name:
            kwargs[limit_name] = 7
        sequence, pages, seen = 0, 0, set()
        while pages < 1000:
            kwargs[sequence_name] = sequence
            result = method(**kwargs)
            pages += 1
            for record in result.results:
                seen.add(record.sequence_number)
            if not result.results or sequence >= result.maximum_sequence_number:
                break
            sequence = max(record.sequence_number for record in result.results)
        maximum = result.maximum_sequence_number
        if sequence == maximum and len(seen) == maximum:
            print("sync loop over GET %s: %d pages, %d records, ended at %d" % (path, pages, len(seen), maximum))
            passed += 1
        else:
            failures.append("sync loop over GET %s did not end at its maximum (%d, at %d)" % (path, maximum, sequence))

    for failure in failures:
        print("FAIL " + failure)
    print("%s: %d passed, %d failed" % (args.package, passed, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
