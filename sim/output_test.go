package sim

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestStreamKeepsTheLastBytesAndCapsTheCapture(t *testing.T) {
	s := &stream{capLimit: 20, tailLimit: 8}
	s.WriteString("0123456789")
	if tail, cut := s.Tail(); tail != "23456789" || !cut {
		t.Fatalf("tail %q cut %v", tail, cut)
	}
	if got := s.Captured(); got != "0123456789" {
		t.Fatalf("capture under the cap: %q", got)
	}
	s.WriteString("abcdefghijklmnopqrstuvwxyz")
	// 36 bytes written, cap 20: first 10, a marker, last 10.
	if got := s.Captured(); got != "0123456789\n[... 16 bytes truncated ...]\nqrstuvwxyz" {
		t.Fatalf("capture over the cap: %q", got)
	}
	if tail, _ := s.Tail(); tail != "stuvwxyz" {
		t.Fatalf("tail %q", tail)
	}
}

func TestStreamTailCutsAtARuneStart(t *testing.T) {
	s := &stream{capLimit: 100, tailLimit: 5}
	s.WriteString("ééééé") // 10 bytes; the last 5 start inside a rune
	tail, cut := s.Tail()
	if !cut || !utf8.ValidString(tail) || tail != "éé" {
		t.Fatalf("tail %q cut %v", tail, cut)
	}
}

func TestStreamStaysBoundedOverALongRun(t *testing.T) {
	s := newStream()
	line := strings.Repeat("x", 1000) + "\n"
	for range 20000 { // 20 MB
		s.WriteString(line)
	}
	if tail, _ := s.Tail(); len(tail) != TailBytes {
		t.Fatalf("tail %d bytes", len(tail))
	}
	if c := cap(s.ring); c > 3*TailBytes {
		t.Fatalf("ring array grew to %d bytes", c)
	}
	if got := s.Captured(); len(got) > CaptureBytes+100 || !strings.Contains(got, "bytes truncated") {
		t.Fatalf("capture %d bytes", len(got))
	}
}

func TestParseMix(t *testing.T) {
	var m Mix
	if err := m.ParseWeights("success=90, failure=5,timeout=5"); err != nil || m.Success != 90 || m.Failure != 5 || m.Timeout != 5 {
		t.Fatalf("%+v %v", m, err)
	}
	if err := m.ParseWeights("failure=1"); err != nil || m.Success != 0 || m.Failure != 1 {
		t.Fatalf("left-out outcomes weigh 0: %+v %v", m, err)
	}
	for _, bad := range []string{"success", "success=x", "succes=1", "success=-1", "success=0", ""} {
		if err := m.ParseWeights(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	m = Mix{Failure: 1, MinDuration: time.Second, MaxDuration: time.Second}
	if p := m.draw(); p.outcome != Failure || p.duration != time.Second {
		t.Fatalf("draw %+v", p)
	}
	if lo, hi, err := ParseDurationRange("2s-20s"); err != nil || lo != 2*time.Second || hi != 20*time.Second {
		t.Fatalf("range %v %v %v", lo, hi, err)
	}
	if _, _, err := ParseDurationRange("5s-1s"); err == nil {
		t.Fatal("inverted range accepted")
	}
	if n, err := ParseBytes("4KiB"); err != nil || n != 4096 {
		t.Fatalf("bytes %d %v", n, err)
	}
}

func TestDirectives(t *testing.T) {
	p, err := applyDirectives(plan{outcome: Success, exitCode: 1}, "echo hi\n  # sim: exit=3 duration=2s output=1KiB\n")
	if err != nil || p.outcome != Failure || p.exitCode != 3 || p.duration != 2*time.Second || p.output != 1024 {
		t.Fatalf("%+v %v", p, err)
	}
	// Whatever the mix drew, an exit code is a run that exits with it; an
	// outcome directive still wins.
	for _, drawn := range []Outcome{Success, Failure, Timeout} {
		for script, want := range map[string]Outcome{
			"# sim: exit=125 duration=0s":           Failure,
			"# sim: exit=0":                         Success,
			"# sim: outcome=timeout exit=3":         Timeout,
			"# sim: exit=3\n# sim: outcome=timeout": Timeout,
		} {
			if p, err := applyDirectives(plan{outcome: drawn, exitCode: 1}, script); err != nil || p.outcome != want {
				t.Errorf("drawn %s, %q: outcome %s (%v), want %s", drawn, script, p.outcome, err, want)
			}
		}
	}
	if _, err := applyDirectives(plan{}, "# sim: outcome=maybe"); err == nil {
		t.Fatal("unknown outcome accepted")
	}
}
