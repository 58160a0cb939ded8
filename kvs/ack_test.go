package kvs

import (
	"errors"
	"strings"
	"testing"
)

func TestAckWireFormat(t *testing.T) {
	cases := []struct {
		ack  Ack
		line string
	}{
		{Ack{EventType: AckPersisted, FragmentTimecode: 1704067200000, HasTimecode: true, FragmentNumber: "91343852333181432392682062607743920146159169392"},
			`{"EventType":"PERSISTED","FragmentTimecode":1704067200000,"FragmentNumber":"91343852333181432392682062607743920146159169392"}` + "\n"},
		{Ack{EventType: AckIdle}, `{"EventType":"IDLE"}` + "\n"},
		{ErrorAck(4002, 5, true, "9"), `{"EventType":"ERROR","FragmentTimecode":5,"FragmentNumber":"9","ErrorId":4002,"ErrorCode":"MAX_FRAGMENT_DURATION_REACHED"}` + "\n"},
	}
	for _, c := range cases {
		if got := string(c.ack.AppendJSON(nil)); got != c.line {
			t.Errorf("AppendJSON\n got %s\nwant %s", got, c.line)
		}
		back, err := ParseAck([]byte(strings.TrimSpace(c.line)))
		if err != nil || back != c.ack {
			t.Errorf("ParseAck(%s) = %+v, %v", c.line, back, err)
		}
	}
	// Unknown keys and spacing are fine, as in the C parser.
	a, err := ParseAck([]byte(` { "EventType" : "BUFFERING", "Extra": [1], "FragmentTimecode": 12 } `))
	if err != nil || a.EventType != AckBuffering || a.FragmentTimecode != 12 {
		t.Fatalf("%+v %v", a, err)
	}
	for _, bad := range []string{`{"EventType":"NOPE"}`, `{"EventType":"ERROR"}`, `{"EventType":"PERSISTED","FragmentTimecode":"x"}`, `nope`} {
		if _, err := ParseAck([]byte(bad)); !errors.Is(err, ErrMalformedAck) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestErrorCatalogue(t *testing.T) {
	for _, id := range []int{4000, 4001, 4002, 4003, 4004, 4005, 4006, 4007, 4008, 4009, 4010, 4011, 4012, 4500, 4507, 5000, 5001} {
		info := LookupAckError(id)
		if info.ID != id || info.Code == "" || info.Code == "UNKNOWN_ACK_ERROR" || info.Cause == "" || info.Fix == "" {
			t.Errorf("%d: %+v", id, info)
		}
	}
	if info := LookupAckError(4242); info.Code != "UNKNOWN_ACK_ERROR" || !info.Retriable {
		t.Errorf("unknown id: %+v", info)
	}
	if LookupAckError(4002).Retriable || !LookupAckError(5000).Retriable {
		t.Error("retriability as the SDK has it")
	}
}

// FuzzParseAck: any line the network delivers parses or is refused, and
// what parses writes back to an equivalent line.
func FuzzParseAck(f *testing.F) {
	f.Add([]byte(`{"EventType":"PERSISTED","FragmentTimecode":1,"FragmentNumber":"2"}`))
	f.Add([]byte(`{"EventType":"ERROR","ErrorId":4002,"ErrorCode":"X"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		a, err := ParseAck(line)
		if err != nil {
			return
		}
		b, err := ParseAck(a.AppendJSON(nil))
		if err != nil || b != a {
			t.Fatalf("round trip of %+v: %+v %v", a, b, err)
		}
	})
}

func TestAckQuoting(t *testing.T) {
	a := Ack{EventType: AckError, ErrorID: 1, ErrorCode: "a\"b\\c\x00\n\u00e9"}
	b, err := ParseAck(a.AppendJSON(nil))
	if err != nil || b != a {
		t.Fatalf("%+v %v (%s)", b, err, a.AppendJSON(nil))
	}
}
