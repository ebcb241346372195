import ArgumentParser
import Config
import Dispatch
import EventLoop
import Foundation
import Logging
import Proxy
import Sandbox

struct FloridayProxy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "floriday-proxy",
        abstract: "An authenticating reverse proxy for the Floriday API.",
        subcommands: [Run.self, CheckConfig.self, Verify.self, TokenCommand.self, Healthcheck.self, SandboxCommand.self, Demo.self],
        defaultSubcommand: Run.self)
}

struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Path of the YAML configuration (without it: environment variables only).")
    var config: String?

    /// Loads the configuration or exits with status 2 and one line naming the key.
    func load() -> ProxyConfig {
        do {
            return try loadOrThrow()
        } catch {
            fail("\(error)")
        }
    }

    func loadOrThrow() throws -> ProxyConfig {
        try ConfigLoader.load(path: config, environment: ProcessInfo.processInfo.environment)
    }
}

func makeLogger(_ settings: LogSettings) -> Logger {
    let format: LineLogHandler.Format = settings.format == .json ? .json : .text
    let level = Logger.Level(rawValue: settings.level) ?? .info
    LoggingSystem.bootstrap { label in LineLogHandler(label: label, format: format, logLevel: level) }
    LogOutput.standardError.setDroppedNotice { count in
        LineLogHandler.render(level: .warning, message: "log.dropped", metadata: ["lines": "\(count)", "reason": "the log output is too slow"], format: format)
    }
    // Lines still queued are written before the process ends (bounded: the reader may be stuck).
    atexit { LogOutput.standardError.flush(timeout: 2) }
    return Logger(label: "floriday-proxy")
}

/// Where signals are handled. Not the main queue: serving that takes `dispatchMain()`, which
/// ends the main thread, and with it the stack that holds what the command set up.
private let signalQueue = DispatchQueue(label: "floriday-proxy.signals")

/// Stops on SIGINT/SIGTERM: the first signal drains, a second one exits at once.
/// The calling thread waits here until the process exits.
func runUntilSignalled(stop: @escaping (@escaping @Sendable () -> Void) -> Void) -> Never {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    var stopping = false   // on signalQueue only
    var sources: [DispatchSourceSignal] = []
    for number in [SIGINT, SIGTERM] {
        let source = DispatchSource.makeSignalSource(signal: number, queue: signalQueue)
        source.setEventHandler {
            if stopping { Foundation.exit(1) }   // a second signal: no more waiting
            stopping = true
            stop { Foundation.exit(0) }
        }
        source.activate()
        sources.append(source)
    }
    let never = DispatchSemaphore(value: 0)
    while true { withExtendedLifetime(sources) { never.wait() } }   // the handlers exit
}

/// Runs `work` on every SIGHUP (one at a time, with the other signal handlers).
func onSIGHUP(_ work: @escaping () -> Void) -> DispatchSourceSignal {
    signal(SIGHUP, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: signalQueue)
    source.setEventHandler(handler: work)
    source.activate()
    return source
}

func fail(_ message: String, status: Int32 = 2) -> Never {
    FileHandle.standardError.write(Data("\(message)\n".utf8))
    Foundation.exit(status)
}

func parseListen(_ text: String) -> SocketAddress? {
    var host = text
    var portText = ""
    if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
        host = String(text[text.index(after: text.startIndex)..<close])
        portText = String(text[text.index(after: close)...].dropFirst())
    } else if let colon = text.lastIndex(of: ":") {
        host = String(text[..<colon])
        portText = String(text[text.index(after: colon)...])
    }
    guard let port = Int(portText), (0...65535).contains(port) else { return nil }
    if host == "localhost" { host = "127.0.0.1" }
    return SocketAddress(ip: host.isEmpty ? "0.0.0.0" : host, port: port)
}

FloridayProxy.main()
