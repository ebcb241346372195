import Testing
import Config

struct EndpointURLTests {
    @Test func parsesAnHTTPSURL() throws {
        let url = try EndpointURL("https://IDM.staging.floriday.io/oauth2/ausmw6b47z1BnlHkw0h7", key: "issuer_url")
        #expect(url.scheme == "https")
        #expect(url.host == "idm.staging.floriday.io")
        #expect(url.port == 443)
        #expect(url.path == "/oauth2/ausmw6b47z1BnlHkw0h7")
        #expect(url.isTLS)
        #expect(url.authority == "idm.staging.floriday.io")
        #expect(url.description == "https://idm.staging.floriday.io/oauth2/ausmw6b47z1BnlHkw0h7")
    }

    @Test func parsesPortsAndIPv6() throws {
        let local = try EndpointURL("http://127.0.0.1:9090", key: "api_url")
        #expect(local.scheme == "http" && !local.isTLS)
        #expect(local.port == 9090 && local.path == "")
        #expect(local.authority == "127.0.0.1:9090")

        let v6 = try EndpointURL("HTTP://[::1]:8443/", key: "api_url")
        #expect(v6.scheme == "http" && v6.host == "::1" && v6.port == 8443 && v6.path == "/")
        #expect(v6.authority == "[::1]:8443")
        #expect(v6.description == "http://[::1]:8443/")

        let defaultPort = try EndpointURL("https://api.floriday.io:443", key: "api_url")
        #expect(defaultPort.authority == "api.floriday.io")
        #expect(defaultPort == EndpointURL(scheme: "https", host: "api.floriday.io"))
    }

    @Test func appendsPaths() throws {
        let issuer = try EndpointURL("https://idm.floriday.io/oauth2/aus3testdcf2vyfs70i7", key: "issuer_url")
        let wellKnown = "https://idm.floriday.io/oauth2/aus3testdcf2vyfs70i7/.well-known/oauth-authorization-server"
        #expect(issuer.appendingPath("/.well-known/oauth-authorization-server").description == wellKnown)
        #expect(issuer.appendingPath(".well-known/oauth-authorization-server").description == wellKnown)
        let slashed = try EndpointURL("https://idm.floriday.io/oauth2/aus3testdcf2vyfs70i7/", key: "issuer_url")
        #expect(slashed.appendingPath("/.well-known/oauth-authorization-server").description == wellKnown)
        let bare = try EndpointURL("https://localhost:8443", key: "issuer_url")
        #expect(bare.appendingPath("/token").description == "https://localhost:8443/token")
        #expect(bare.appendingPath("").description == "https://localhost:8443")
    }

    @Test(arguments: [
        ("api.floriday.io", #"config: api_url: "api.floriday.io" is not an absolute URL; expected http:// or https:// and a host"#),
        ("ftp://api.floriday.io", #"config: api_url: "ftp://api.floriday.io" must start with http:// or https://"#),
        ("https://", #"config: api_url: "https://" has no host"#),
        ("https://:443", #"config: api_url: "https://:443" has no host"#),
        ("https://api.floriday.io?x=1", #"config: api_url: "https://api.floriday.io?x=1" must not have a query or fragment"#),
        ("https://api.floriday.io/#top", #"config: api_url: "https://api.floriday.io/#top" must not have a query or fragment"#),
        ("https://user:hunter2@api.floriday.io", "config: api_url: the URL must not contain user info (user:password@)"),
        ("https://api.floriday.io:0", #"config: api_url: "https://api.floriday.io:0" has port 0, outside 1-65535"#),
        ("https://api.floriday.io:65536", #"config: api_url: "https://api.floriday.io:65536" has port 65536, outside 1-65535"#),
        ("https://api.floriday.io:https", #"config: api_url: "https://api.floriday.io:https" has an invalid port "https""#),
        ("https://api floriday.io", #"config: api_url: "https://api floriday.io" must not contain spaces or control characters"#),
        ("https://api_floriday!.io", #"config: api_url: "https://api_floriday!.io" has an invalid host name"#),
        ("https://[::1", #"config: api_url: "https://[::1" has an IPv6 address without its closing "]""#),
        ("https://[zz::1]", #"config: api_url: "https://[zz::1]" has an invalid IPv6 address"#),
        ("https://::1:443", #"config: api_url: "https://::1:443" has an IPv6 address without brackets (write [::1]:8080)"#),
    ])
    func rejectsBadURLs(text: String, expected: String) {
        do {
            let url = try EndpointURL(text, key: "api_url")
            Issue.record("accepted \(url)")
        } catch {
            #expect(error.description == expected)
            #expect(!error.description.contains("hunter2"))
        }
    }

    @Test func parsesListenAddresses() throws {
        #expect(try HostPort("127.0.0.1:8080", key: "listen") == HostPort(host: "127.0.0.1", port: 8080))
        #expect(try HostPort("0.0.0.0:80", key: "listen").description == "0.0.0.0:80")
        #expect(try HostPort("localhost:65535", key: "listen").host == "localhost")
        let v6 = try HostPort("[::1]:8080", key: "listen")
        #expect(v6.host == "::1" && v6.port == 8080)
        #expect(v6.description == "[::1]:8080")
        #expect(try HostPort("[::]:1", key: "listen").host == "::")
    }

    @Test(arguments: [
        ("8080", #"config: listen: "8080" has no port; expected host:port such as 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"#),
        (":8080", #"config: listen: ":8080" has no host; expected host:port such as 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"#),
        ("localhost:0", #"config: listen: "localhost:0" has port 0, outside 1-65535; expected host:port such as 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"#),
        ("localhost:70000", #"config: listen: "localhost:70000" has port 70000, outside 1-65535; expected host:port such as 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"#),
        ("localhost:", #"config: listen: "localhost:" has an invalid port ""; expected host:port such as 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"#),
        ("::1:8080", #"config: listen: "::1:8080" has an IPv6 address without brackets (write [::1]:8080); expected host:port such as 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"#),
        ("[::1]", #"config: listen: "[::1]" has no port; expected host:port such as 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"#),
    ])
    func rejectsBadListenAddresses(text: String, expected: String) {
        #expect(throws: ConfigError.self) { try HostPort(text, key: "listen") }
        do {
            _ = try HostPort(text, key: "listen")
        } catch {
            #expect(error.description == expected)
        }
    }

    @Test func secretsPrintAsStars() {
        let secret = Secret("s3cr3t")
        #expect(secret.value == "s3cr3t")
        #expect("\(secret)" == "***")
        #expect(String(reflecting: secret) == "***")
        #expect(Secret("a") == Secret("a") && Secret("a") != Secret("b"))
    }
}
