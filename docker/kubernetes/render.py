#!/usr/bin/env python3
"""Renders a kustomization the way `kubectl kustomize` does, for machines without kubectl.

    python3 docker/kubernetes/render.py docker/kubernetes/overlays/staging > staging.yaml
    python3 docker/kubernetes/render.py --compare rendered.yaml docker/kubernetes/overlays/staging

Only the fields these manifests use are understood (resources, namespace, labels, images,
replicas, patches with a file of strategic-merge patches); any other field is refused, so a
kustomization that grows past this subset fails here instead of rendering differently.
With --compare, the objects rendered here must equal those in the given file (the output of
`kubectl kustomize`), in any order.
"""
import copy
import os
import sys

import yaml

KNOWN_FIELDS = {"apiVersion", "kind", "namespace", "resources", "labels", "images", "replicas", "patches"}
# Kinds that are not namespaced, among those a proxy deployment might use.
CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                 "CustomResourceDefinition", "PriorityClass"}
# The lists that a strategic-merge patch merges by key rather than replaces (the keys
# Kubernetes declares with patchMergeKey for these fields).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}


class RenderError(Exception):
    pass


def load_documents(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def merge(base, patch, field=None):
    """A strategic merge of `patch` into `base` (without $patch directives)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        # As kubectl orders it: the patch's items first, in the patch's order (merged with
        # the base's item of the same key), then the base's items the patch does not name.
        key = MERGE_KEYS[field]
        named = {item.get(key) for item in patch if isinstance(item, dict)}
        out = []
        for item in patch:
            existing = next((b for b in base if isinstance(b, dict) and b.get(key) == item.get(key)), None)
            out.append(merge(existing, item) if existing is not None else copy.deepcopy(item))
        out += [copy.deepcopy(item) for item in base if not (isinstance(item, dict) and item.get(key) in named)]
        return out
    return copy.deepcopy(patch)


def identity(obj):
    return (obj.get("kind"), obj.get("metadata", {}).get("name"))


def set_image(container, images):
    image = container.get("image", "")
    name, _, tag = image.partition(":")
    for rule in images:
        if rule["name"] == name:
            container["image"] = rule.get("newName", name) + ":" + str(rule.get("newTag", tag or "latest"))


def render(folder):
    path = os.path.join(folder, "kustomization.yaml")
    if not os.path.isfile(path):
        raise RenderError(f"{folder}: no kustomization.yaml")
    (k,) = load_documents(path)
    unknown = set(k) - KNOWN_FIELDS
    if unknown:
        raise RenderError(f"{path}: fields this renderer does not know: {', '.join(sorted(unknown))}")
    objects = []
    for resource in k.get("resources", []):
        target = os.path.normpath(os.path.join(folder, resource))
        objects.extend(render(target) if os.path.isdir(target) else load_documents(target))
    for patch_entry in k.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise RenderError(f"{path}: only patches with a path are supported")
        for patch in load_documents(os.path.join(folder, patch_entry["path"])):
            matches = [i for i, o in enumerate(objects) if identity(o) == identity(patch)]
            if not matches:
                raise RenderError(f"{path}: patch {patch_entry['path']}: no {identity(patch)} to patch")
            for i in matches:
                objects[i] = merge(objects[i], patch)
    for entry in k.get("labels", []):
        if entry.get("includeSelectors") or entry.get("includeTemplates") or set(entry) - {"pairs"}:
            raise RenderError(f"{path}: labels: only plain pairs are supported")
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for rule in k.get("replicas", []):
        for obj in objects:
            if obj.get("metadata", {}).get("name") == rule["name"] and "replicas" in obj.get("spec", {}):
                obj["spec"]["replicas"] = rule["count"]
    if k.get("images"):
        for obj in objects:
            pod = obj.get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                set_image(container, k["images"])
    if k.get("namespace"):
        for obj in objects:
            if obj.get("kind") not in CLUSTER_KINDS:
                obj.setdefault("metadata", {})["namespace"] = k["namespace"]
    return objects


def main(argv):
    compare = None
    if argv[:1] == ["--compare"]:
        compare, argv = argv[1], argv[2:]
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        objects = render(argv[0])
    except (RenderError, OSError, yaml.YAMLError, KeyError, ValueError) as error:
        print(f"render: {error}", file=sys.stderr)
        return 1
    if compare is None:
        yaml.safe_dump_all(objects, sys.stdout, sort_keys=False)
        return 0
    theirs = {identity(o): o for o in load_documents(compare)}
    ours = {identity(o): o for o in objects}
    differences = [f"{kind}/{name}: only in {'ours' if key in ours else compare}"
                   for key in sorted(set(ours) ^ set(theirs), key=str) for kind, name in [key]]
    differences += [f"{kind}/{name}: differs" for (kind, name) in sorted(set(ours) & set(theirs), key=str)
                    if ours[(kind, name)] != theirs[(kind, name)]]
    for line in differences:
        print(line)
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
