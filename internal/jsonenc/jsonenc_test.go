package jsonenc

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "<a href=\"x\">&amp;</a>", "tab\tnew\nline\r\b\f\x00\x1f\x7f",
		"\u2028\u2029", "caf\xc3\xa9", "bad \xff\xfe utf8", "\xe2\x80", "emoji 😀", `back\slash`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q:\nappend: %s\njson:   %s", s, got, want)
		}
	})
}

func FuzzAppendFloat(f *testing.F) {
	for _, x := range []float64{0, math.Copysign(0, -1), 1, -1.5, 1e-6, 9.99e-7, 1e21, 1e20, 123456789.125, 5e-324, math.MaxFloat64, 1e-7, math.NaN(), math.Inf(1)} {
		f.Add(x)
	}
	f.Fuzz(func(t *testing.T, x float64) {
		want, err := json.Marshal(x)
		got, ok := AppendFloat(nil, x)
		if ok != (err == nil) || ok && !bytes.Equal(got, want) {
			t.Fatalf("%v: append %s %v; json %s %v", x, got, ok, want, err)
		}
	})
}

// AppendTime writes what time.Time's MarshalJSON writes, and refuses what
// it refuses: years outside [0,9999], zone offsets of 24 hours or more.
func FuzzAppendTime(f *testing.F) {
	for _, c := range []struct {
		sec    int64
		nsec   int64
		offset int
	}{{0, 0, 0}, {1795000000, 120000000, 0}, {1795000000, 999999999, 5*3600 + 30*60}, {1795000000, 1, -8 * 3600},
		{1795000000, 0, 3600 + 7}, {1795000000, 0, 25 * 3600}, {-62167219200, 0, 0}, {-62167219201, 0, 0},
		{253402300799, 0, 0}, {253402300800, 0, 0}, {253402300799, 0, -3600}} {
		f.Add(c.sec, c.nsec, c.offset)
	}
	f.Fuzz(func(t *testing.T, sec, nsec int64, offset int) {
		tm := time.Unix(sec, nsec).In(time.FixedZone("z", offset%(48*3600)))
		want, err := tm.MarshalJSON()
		got, ok := AppendTime(nil, tm)
		if ok != (err == nil) || ok && !bytes.Equal(got, want) {
			t.Fatalf("%v: append %s %v; MarshalJSON %s %v", tm, got, ok, want, err)
		}
	})
}
