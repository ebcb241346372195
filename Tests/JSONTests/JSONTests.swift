import JSON
import Testing

@Suite struct JSONParserTests {
    @Test func parsesAndKeepsTypes() throws {
        let value = try JSONParser.parse(Array(#" {"a":[1,-2.5e3,true,null,"\u00e9\ud83c\udf37\n"],"b":{}} "#.utf8))
        #expect(value.serialized == #"{"a":[1,-2.5e3,true,null,"é🌷\n"],"b":{}}"#)
    }

    @Test func refusesMalformedJSON() {
        for text in ["", "{", "[1,]", "01", "1.", "\"\u{01}\"", "tru", "{\"a\" 1}", "[1] x", "\"\\ud800\""] {
            #expect(throws: JSONParser.Failure.self, "\(text)") { try JSONParser.parse(Array(text.utf8)) }
        }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(Array(deep.utf8)) }
    }

    @Test func numbersKeepIntegerAndOtherApart() throws {
        let value = try JSONParser.parse(Array(#"{"i":3600,"d":3600.5,"e":1e3,"n":-0,"big":123456789012345678901234567890}"#.utf8))
        #expect(value["i"] == .int(3600))
        #expect(value["i"]?.doubleValue == 3600)
        #expect(value["d"] == .number("3600.5"))
        #expect(value["d"]?.doubleValue == 3600.5)
        #expect(value["d"]?.intValue == nil)
        #expect(value["e"]?.doubleValue == 1000)
        #expect(value["n"] == .int(0))
        // Too long for Int: kept as text, and still a number.
        #expect(value["big"] == .number("123456789012345678901234567890"))
        #expect(value["big"]?.doubleValue == 1.2345678901234568e29)
    }

    @Test func membersByName() throws {
        let value = try JSONParser.parse(Array(#"{"access_token":"abc","token_type":"Bearer","scope":null,"list":[1]}"#.utf8))
        #expect(value["access_token"]?.stringValue == "abc")
        #expect(value["scope"] == .null)
        #expect(value["scope"]?.stringValue == nil)
        #expect(value["missing"] == nil)
        #expect(value["list"]?.arrayValue == [1])
        #expect(value["list"]?.stringValue == nil)
        // Not an object: no members.
        #expect(JSONValue.array([1])["a"] == nil)
    }
}

@Suite struct JSONWriterTests {
    @Test func escapes() {
        let value: JSONValue = ["k\"": "line\nbreak\u{1}/é", "n": nil, "b": true, "a": [1, -2]]
        #expect(value.serialized == #"{"k\"":"line\nbreak\u0001/é","n":null,"b":true,"a":[1,-2]}"#)
    }

    @Test func aStringLiteralOnItsOwn() {
        #expect(jsonString("a \"b\" \\ \u{7}\t") == #""a \"b\" \\ \u0007\t""#)
        #expect(jsonString("") == #""""#)
    }

    @Test func membersKeepTheirOrderAndRoundTrip() throws {
        let text = #"{"z":1,"a":[true,false,null],"m":{"x":"y"},"f":-2.5e3}"#
        let value = try JSONParser.parse(Array(text.utf8))
        #expect(value.serialized == text)
        #expect(try JSONParser.parse(value.bytes) == value)
    }
}
