import Config
import Testing

struct AdminListenTests {
    @Test func defaultsToLoopback9901() throws {
        #expect(try load(nil).adminListen == HostPort(host: "127.0.0.1", port: 9901))
    }

    @Test(arguments: ["admin_listen: off\n", "admin_listen:\n", "admin_listen: \"\"\n"])
    func canBeDisabled(yaml: String) throws {
        #expect(try load(yaml).adminListen == nil)
    }

    @Test func fromTheFileOrTheEnvironment() throws {
        #expect(try load("admin_listen: 0.0.0.0:9000\n").adminListen == HostPort(host: "0.0.0.0", port: 9000))
        var environment = credentials
        environment["PROXY_ADMIN_LISTEN"] = "127.0.0.1:9911"
        #expect(try load(nil, environment: environment).adminListen == HostPort(host: "127.0.0.1", port: 9911))
        environment["PROXY_ADMIN_LISTEN"] = "off"
        #expect(try load(nil, environment: environment).adminListen == nil)
    }

    @Test func badValuesNameTheKey() {
        #expect(loadError("admin_listen: nowhere\n")?.key == "admin_listen")
        #expect(loadError("listen: 127.0.0.1:8080\nadmin_listen: 127.0.0.1:8080\n")?.key == "admin_listen")
    }
}
