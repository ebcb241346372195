@testable import Auth
import EventLoop
import Foundation
import HTTP1
import Sandbox
import TestSupport
import Testing
@testable import Upstream

/// The token provider against the sandbox's identity server: real HTTP and TLS on loopback,
/// time moved by hand.
@Suite struct TokenProviderTests {
    @Test func aConfiguredTokenURLSkipsDiscovery() throws {
        let idm = try IDM()
        let provider = idm.provider(idm.settings { $0.tokenURL = AbsoluteURL(idm.sandbox.issuerURL + "/v1/token") })
        let token = try #require(token(from: provider, on: idm.loop).success)
        #expect(!token.value.isEmpty)
        #expect(idm.state.metadataRequests == 0)
        #expect(idm.state.tokenRequests == 1)
    }

    @Test func discoversTheTokenEndpointOnceAndCachesTheToken() throws {
        let idm = try IDM()
        let provider = idm.provider(idm.settings())
        let first = try #require(token(from: provider, on: idm.loop).success)
        let second = try #require(token(from: provider, on: idm.loop).success)
        #expect(first == second)
        #expect(idm.state.metadataRequests == 1)
        #expect(idm.state.tokenRequests == 1)
        // A refused token (the API said 401) is forgotten; the endpoint is not discovered again.
        provider.invalidate(first)
        let third = try #require(token(from: provider, on: idm.loop).success)
        #expect(third != first)
        #expect(idm.state.metadataRequests == 1)
        #expect(idm.state.tokenRequests == 2)
    }

    /// RFC 6749 §2.3.1: with HTTP Basic, id and secret are form-urlencoded before Base64, so
    /// a secret with ":", "+", "%" or a space survives; the sandbox decodes them the same way.
    @Test func clientSecretBasicAgainstTheIDM() throws {
        let client = SandboxClient(clientID: "client id:1", clientSecret: "s3cr:t+/=%& x", scopes: ["role:app"])
        let idm = try IDM(clients: [client])
        let basic = idm.provider(idm.settings(client: client) { $0.authentication = .clientSecretBasic })
        #expect(token(from: basic, on: idm.loop).success != nil)
        let post = idm.provider(idm.settings(client: client) { $0.authentication = .clientSecretPost })
        #expect(token(from: post, on: idm.loop).success != nil)
        // A wrong secret is refused as invalid_client, Basic or not.
        var wrong = client
        wrong.clientSecret = "not-the-secret"
        let refused = idm.provider(idm.settings(client: wrong) { $0.authentication = .clientSecretBasic })
        #expect(token(from: refused, on: idm.loop).failure?.kind == .invalidClient)
        #expect(!idm.logs.text.contains(client.clientSecret) && !idm.logs.text.contains("not-the-secret"))
    }

    /// The token endpoint stops answering (the IDM moved): after the failure, the next
    /// attempt discovers the endpoint again instead of retrying the dead one forever.
    @Test func rediscoversTheEndpointAfterTheTokenEndpointFails() throws {
        let first = try IDM(tls: false)
        let second = try IDM(tls: false)
        let metadata = try MetadataServer()
        defer { metadata.stop() }
        metadata.tokenEndpoint.withLock { $0 = first.sandbox.issuerURL + "/v1/token" }
        let provider = first.provider(first.settings { $0.issuerURL = AbsoluteURL(metadata.issuerURL)! })
        let token1 = try #require(token(from: provider, on: first.loop).success)
        #expect(metadata.requests.withLock { $0 } == 1)
        #expect(first.state.tokenRequests == 1)

        // The first IDM goes away; the metadata now names the second.
        let firstPort = first.sandbox.port
        first.sandbox.stop()
        #expect(eventually { !canConnect(port: firstPort) })
        metadata.tokenEndpoint.withLock { $0 = second.sandbox.issuerURL + "/v1/token" }
        provider.invalidate(token1)
        let failure = try #require(token(from: provider, on: first.loop).failure)
        #expect(failure.kind == .unreachable)
        #expect(metadata.requests.withLock { $0 } == 1, "the cached endpoint is tried first")

        // After the back-off (at most 1 s after one failure): discovery, then the new endpoint.
        first.clock.advance(by: .seconds(1))
        let token2 = try #require(token(from: provider, on: first.loop).success)
        #expect(token2 != token1)
        #expect(metadata.requests.withLock { $0 } == 2)
        #expect(second.state.tokenRequests == 1)
    }

    @Test func aOneSecondTokenIsUsedUntilItExpires() throws {
        let idm = try IDM(tokenLifetime: 1)
        let provider = idm.provider(idm.settings())
        let token1 = try #require(token(from: provider, on: idm.loop).success)
        #expect(token1.lifetime == .seconds(1))
        #expect(provider.usableToken() == token1)
        // The 60 s margin is capped at half the lifetime: refresh-ahead from 0.5 s.
        idm.clock.advance(by: .milliseconds(600))
        #expect(provider.usableToken() == token1)
        #expect(eventually { provider.cachedToken.map { $0 != token1 } ?? false })
        #expect(idm.state.tokenRequests == 2)
        // Past the new token's expiry nothing usable is cached; the next caller fetches.
        let token2 = try #require(provider.cachedToken)
        idm.clock.advance(by: .seconds(1))
        #expect(provider.usableToken() == nil)
        let token3 = try #require(token(from: provider, on: idm.loop).success)
        #expect(token3 != token2)
        #expect(idm.state.tokenRequests == 3)
    }

    /// A refresh ahead of expiry fails: the still-valid token keeps being used, no second
    /// attempt is made during the back-off, and the next attempt after it succeeds.
    @Test func aFailedBackgroundRefreshKeepsTheValidToken() throws {
        let idm = try IDM(tokenLifetime: 100)   // margin 60 s capped at 50: refresh from 50 s
        let provider = idm.provider(idm.settings())
        let token1 = try #require(token(from: provider, on: idm.loop).success)
        idm.state.idmFailure = .status(503)
        idm.advance(by: 60)
        #expect(provider.usableToken() == token1)   // starts the refresh
        #expect(eventually { provider.failureCount == 1 })
        #expect(idm.state.tokenRequests == 2)
        // During the back-off: the valid token, and no new attempt (any attempt would have
        // been counted on the provider's loop by the time a block queued after it runs).
        #expect(provider.usableToken() == token1)
        #expect(token(from: provider, on: idm.loop).success == token1)
        onLoop(idm.loop) {}
        #expect(provider.fetchCount == 2)
        #expect(idm.state.tokenRequests == 2)
        // After the back-off the next request refreshes, and this time the IDM answers.
        idm.state.idmFailure = nil
        idm.advance(by: 1)
        #expect(provider.usableToken() == token1)
        #expect(eventually { provider.cachedToken.map { $0 != token1 } ?? false })
        #expect(provider.usableToken() != token1)
        #expect(idm.state.tokenRequests == 3)
    }

    /// Without a valid token, failures are answered at once during the back-off, with a
    /// `Retry-After` that grows: 1 s after the first failure, up to 2 s after the second, ...
    @Test func failuresBackOffWithAGrowingRetryAfter() throws {
        let idm = try IDM()
        idm.state.idmFailure = .status(500)
        let provider = idm.provider(idm.settings(), jitter: SeededGenerator(printingSeedFor: "failuresBackOffWithAGrowingRetryAfter"))
        let first = try #require(token(from: provider, on: idm.loop).failure)
        #expect(first.kind == .rejected)
        #expect(first.retryAfter == 1)
        // Inside the back-off: an answer at once, no new request to the IDM.
        let during = try #require(token(from: provider, on: idm.loop).failure)
        #expect(during.retryAfter == 1)
        #expect(idm.state.tokenRequests == 1)
        var attempts = 1
        for (failures, bounds) in [(2, 1...2), (3, 2...4), (4, 4...8)] {
            idm.clock.advance(by: .seconds(bounds.upperBound / 2))   // the longest the previous back-off could be
            let error = try #require(token(from: provider, on: idm.loop).failure)
            attempts += 1
            #expect(idm.state.tokenRequests == attempts, "after \(failures - 1) failures")
            #expect(bounds.contains(error.retryAfter ?? -1), "Retry-After \(error.retryAfter ?? -1) after \(failures) failures")
        }
        #expect(provider.failureCount == 4)
    }
}

/// The answer of the token endpoint, parsed: `expires_in` at its edges (RFC 6749 §5.1).
@Suite struct TokenResponseTests {
    private func parse(_ json: String, status: Int = 200, margin: Duration = .seconds(60)) -> (Result<AccessToken, TokenError>, requested: UInt64) {
        let clock = ManualClock()
        let requested = clock.nanoseconds
        clock.advance(by: .milliseconds(30))   // the answer takes a moment
        let response = CollectedResponse(head: HTTPResponseHead(status: status), body: Array(json.utf8))
        return (TokenResponseParser.parse(response, margin: margin, requested: requested, clock: clock), requested)
    }

    @Test func expiresInZeroIsRefused() {
        #expect(parse(#"{"access_token":"t","token_type":"Bearer","expires_in":0}"#).0.failure?.kind == .malformedResponse)
        #expect(parse(#"{"access_token":"t","token_type":"Bearer","expires_in":-5}"#).0.failure?.kind == .malformedResponse)
    }

    @Test func expiresInMissingIsRefused() {
        let (result, _) = parse(#"{"access_token":"t","token_type":"Bearer"}"#)
        #expect(result.failure?.kind == .malformedResponse)
        #expect(result.failure?.message.contains("expires_in") == true)
    }

    @Test func expiresInMustBeANumber() {
        for value in [#""3600""#, "true", "null", "[3600]"] {
            let (result, _) = parse(#"{"access_token":"t","token_type":"Bearer","expires_in":\#(value)}"#)
            #expect(result.failure?.kind == .malformedResponse, "expires_in \(value)")
        }
    }

    @Test func aBodyThatIsNotJSONIsMalformed() {
        #expect(parse("<html>ok</html>").0.failure?.kind == .malformedResponse)
        // A refusal without a JSON body is still a refusal, with the status in the message.
        let (refused, _) = parse("Forbidden", status: 403)
        #expect(refused.failure?.kind == .rejected)
        #expect(refused.failure?.message == "IDM refused the token request: HTTP 403")
        let (invalid, _) = parse(#"{"error":"invalid_client","error_description":"No client"}"#, status: 401)
        #expect(invalid.failure?.kind == .invalidClient)
        #expect(invalid.failure?.message == "IDM refused the token request: HTTP 401 invalid_client (No client)")
    }

    @Test func expiresInOneSecond() throws {
        let (result, requested) = parse(#"{"access_token":"t","token_type":"Bearer","expires_in":1}"#)
        let token = try #require(result.success)
        #expect(token.lifetime == .seconds(1))
        // Counted from the request, not the answer; the margin is at most half the lifetime.
        #expect(token.expiresAt == requested + 1_000_000_000)
        #expect(token.refreshFromAt == requested + 500_000_000)
        #expect(token.isUsable(at: requested + 999_999_999))
        #expect(!token.isUsable(at: requested + 1_000_000_000))
    }

    @Test func aHugeExpiresInIsCappedAtAYear() throws {
        for huge in ["1e12", "9223372036854775807", "1e300", "1e999"] {
            let (result, requested) = parse(#"{"access_token":"t","token_type":"Bearer","expires_in":\#(huge)}"#)
            let token = try #require(result.success, "expires_in \(huge)")
            let year: UInt64 = 365 * 24 * 3600 * 1_000_000_000
            #expect(token.lifetime == .seconds(365 * 24 * 3600), "expires_in \(huge)")
            #expect(token.expiresAt == requested + year, "expires_in \(huge)")
            #expect(token.refreshFromAt == requested + year - 60_000_000_000, "expires_in \(huge)")
        }
    }

    @Test func aFractionalExpiresInKeepsItsMilliseconds() throws {
        let (result, requested) = parse(#"{"access_token":"t","token_type":"Bearer","expires_in":2.5}"#)
        let token = try #require(result.success)
        #expect(token.expiresAt == requested + 2_500_000_000)
    }
}

/// `TokenProvider.backoff`: 1 s, 2 s, 4 s ... capped at 60 s, each scaled by 50–100 %.
@Suite struct BackoffTests {
    private func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    @Test func growsDoublingToTheCapWithJitter() {
        var generator = SeededGenerator(printingSeedFor: "growsDoublingToTheCapWithJitter")
        for failures in 1...12 {
            let base = min(60.0, pow(2.0, Double(failures - 1)))
            let samples = (0..<400).map { _ in seconds(TokenProvider.backoff(failures: failures, using: &generator)) }
            #expect(samples.allSatisfy { $0 >= base * 0.5 - 0.001 && $0 <= base + 0.001 }, "after \(failures) failures: \(samples.min()!)...\(samples.max()!) s, base \(base) s")
            // Jitter spreads the delays over the whole range (400 uniform draws: the extremes
            // of the range are all but certainly approached).
            #expect(samples.min()! < base * 0.6 && samples.max()! > base * 0.9, "after \(failures) failures: \(samples.min()!)...\(samples.max()!) s")
        }
    }

    @Test func theCapHoldsForAnyNumberOfFailures() {
        var generator = SeededGenerator(printingSeedFor: "theCapHoldsForAnyNumberOfFailures")
        for failures in [7, 8, 64, 1000, Int.max] {
            let delay = seconds(TokenProvider.backoff(failures: failures, using: &generator))
            #expect(delay >= 30 && delay <= 60, "after \(failures) failures: \(delay) s")
        }
    }

    @Test func aFixedSeedGivesTheSameDelays() {
        var a = SeededGenerator(seed: 42)
        var b = SeededGenerator(seed: 42)
        let first = (1...8).map { TokenProvider.backoff(failures: $0, using: &a) }
        let second = (1...8).map { TokenProvider.backoff(failures: $0, using: &b) }
        #expect(first == second)
    }
}
