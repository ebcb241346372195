/// A secret kept in a file (a Docker or Kubernetes secret, `*_file` keys, `*_FILE` variables):
/// its text without the trailing whitespace an editor or `echo` adds. An unreadable or empty
/// file is an error under `key`, naming the file as `source` (the path, quoted, and the
/// variable that named it, if one did).
func secret(
    fromFile path: String, key: String, source: String, readFile: (String) throws -> String
) throws(ConfigError) -> String {
    let contents: String
    do {
        contents = try readFile(path)
    } catch {
        throw ConfigError(key: key, problem: "cannot read \(source): \(error)")
    }
    let value = String(contents.reversed().drop(while: \.isWhitespace).reversed())
    if value.isEmpty {
        throw ConfigError(key: key, problem: "\(source) is empty")
    }
    return value
}
