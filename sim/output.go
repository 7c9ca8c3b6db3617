package sim

import (
	"fmt"
	"sync"
	"unicode/utf8"
)

// Output limits an agent applies, from the wire contract.
const (
	// TailBytes is how much of each stream the live tail keeps.
	TailBytes = 128 << 10
	// CaptureBytes caps the output a result carries per stream (head and
	// tail kept, a marker line in between).
	CaptureBytes = 8 << 20
	// ObjectThreshold is the size above which a stream moves to the
	// result_output object store instead of riding in the result.
	ObjectThreshold = 256 << 10
)

// stream is one output stream of a run: the last TailBytes for the live
// tail, and the capped capture for the result. Writes come from the run and
// reads from tail requests, so it locks.
type stream struct {
	mu        sync.Mutex
	ring      []byte // last TailBytes
	truncated bool   // ring dropped bytes
	head      []byte // first CaptureBytes/2
	tail      []byte // last CaptureBytes/2 once head is full
	dropped   int64  // bytes between head and tail
	capLimit  int    // CaptureBytes unless a test shrinks it
	tailLimit int    // TailBytes unless a test shrinks it
}

func newStream() *stream { return &stream{capLimit: CaptureBytes, tailLimit: TailBytes} }

// Write appends p to both buffers; it never fails.
func (s *stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring, s.truncated = keepLast(s.ring, p, s.tailLimit, s.truncated)

	half := s.capLimit / 2
	rest := p
	if room := half - len(s.head); room > 0 {
		n := min(room, len(rest))
		s.head = append(s.head, rest[:n]...)
		rest = rest[n:]
	}
	if len(rest) > 0 {
		var cut bool
		before := len(s.tail) + len(rest)
		s.tail, cut = keepLast(s.tail, rest, half, false)
		if cut {
			s.dropped += int64(before - len(s.tail))
		}
	}
	return len(p), nil
}

// WriteString is Write for a string.
func (s *stream) WriteString(str string) { s.Write([]byte(str)) }

// keepLast appends p to buf and keeps at most limit bytes, cut at a rune
// start so the JSON of a tail never carries a broken character.
func keepLast(buf, p []byte, limit int, truncated bool) ([]byte, bool) {
	buf = append(buf, p...)
	if len(buf) <= limit {
		return buf, truncated
	}
	cut := len(buf) - limit
	for i := 0; i < utf8.UTFMax && cut < len(buf) && !utf8.RuneStart(buf[cut]); i++ {
		cut++
	}
	// Copy when the live part is much smaller than the array, so a long
	// run does not pin ever larger arrays.
	if cap(buf) > 2*limit {
		return append([]byte(nil), buf[cut:]...), true
	}
	return buf[cut:], true
}

// Tail returns the live buffer and whether bytes were dropped from it.
func (s *stream) Tail() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.ring), s.truncated
}

// Captured returns the output for the result: everything when it fits,
// else head, a marker line, and tail.
func (s *stream) Captured() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped == 0 {
		return string(s.head) + string(s.tail)
	}
	return string(s.head) + fmt.Sprintf("\n[... %d bytes truncated ...]\n", s.dropped) + string(s.tail)
}
