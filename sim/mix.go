package sim

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Outcome is how a synthetic run ends.
type Outcome string

// Outcomes of a synthetic run.
const (
	// Success exits 0.
	Success Outcome = "success"
	// Failure exits non-zero (1 unless a directive says otherwise) with a
	// line on stderr.
	Failure Outcome = "failure"
	// Timeout runs until the Command's timeout_secs and exits -1.
	Timeout Outcome = "timeout"
)

// Mix shapes synthetic runs: how they end (relative weights), how long
// they take and how much they print.
type Mix struct {
	Success, Failure, Timeout int
	// MinDuration..MaxDuration is the run time, uniformly drawn.
	MinDuration, MaxDuration time.Duration
	// OutputBytes is roughly how much stdout a run prints, spread over it.
	OutputBytes int
}

// DefaultMix is 90 % success, 5 % failure, 5 % timeout, 1-10 s, 2 KiB.
func DefaultMix() Mix {
	return Mix{Success: 90, Failure: 5, Timeout: 5, MinDuration: time.Second, MaxDuration: 10 * time.Second, OutputBytes: 2 << 10}
}

// ParseWeights sets the outcome weights from "success=90,failure=5,timeout=5".
// Outcomes left out weigh 0.
func (m *Mix) ParseWeights(s string) error {
	m.Success, m.Failure, m.Timeout = 0, 0, 0
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if !ok || err != nil || n < 0 {
			return fmt.Errorf("mix %q: want outcome=weight, weight a whole number >= 0", part)
		}
		switch Outcome(strings.TrimSpace(k)) {
		case Success:
			m.Success = n
		case Failure:
			m.Failure = n
		case Timeout:
			m.Timeout = n
		default:
			return fmt.Errorf("mix %q: unknown outcome (want success, failure or timeout)", part)
		}
	}
	if m.Success+m.Failure+m.Timeout == 0 {
		return fmt.Errorf("mix %q: the weights add up to 0", s)
	}
	return nil
}

// ParseDurationRange reads "2s-20s" or a single "5s".
func ParseDurationRange(s string) (lo, hi time.Duration, err error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if lo, err = time.ParseDuration(a); err != nil {
		return 0, 0, fmt.Errorf("duration range %q: %w", s, err)
	}
	hi = lo
	if isRange {
		if hi, err = time.ParseDuration(b); err != nil {
			return 0, 0, fmt.Errorf("duration range %q: %w", s, err)
		}
	}
	if lo < 0 || hi < lo {
		return 0, 0, fmt.Errorf("duration range %q: want 0 <= min <= max", s)
	}
	return lo, hi, nil
}

// ParseBytes reads a size: "2048", "2KiB", "1MiB" (also K, KB, M, MB as
// binary units).
func ParseBytes(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(t))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with KiB or MiB", s)
	}
	return n * mult, nil
}

// plan is what one synthetic run will do.
type plan struct {
	outcome  Outcome
	exitCode int64 // for Failure
	duration time.Duration
	output   int
}

// draw picks a plan from the mix.
func (m Mix) draw() plan {
	p := plan{outcome: Success, exitCode: 1, output: m.OutputBytes, duration: m.MinDuration}
	if total := m.Success + m.Failure + m.Timeout; total > 0 {
		switch r := rand.IntN(total); {
		case r < m.Success:
			p.outcome = Success
		case r < m.Success+m.Failure:
			p.outcome = Failure
		default:
			p.outcome = Timeout
		}
	}
	if m.MaxDuration > m.MinDuration {
		p.duration += rand.N(m.MaxDuration - m.MinDuration + 1)
	}
	return p
}

// directivePrefix starts a script line that steers a synthetic run, so a
// job (the demo's slow one, a test's) can ask for a given shape:
//
//	# sim: outcome=failure exit=3 duration=20s-60s output=4KiB
const directivePrefix = "# sim:"

// applyDirectives overrides p with the script's "# sim:" lines. An exit
// code pins the outcome to success or failure, unless an outcome directive
// names one: the drawn outcome (a timeout, 5 % of the default mix) must
// not turn "exit=125" into a hang.
func applyDirectives(p plan, script string) (plan, error) {
	named := false // an outcome directive was seen
	for _, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, directivePrefix)
		if !ok {
			continue
		}
		for _, f := range strings.Fields(rest) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "outcome":
				switch o := Outcome(v); o {
				case Success, Failure, Timeout:
					p.outcome, named = o, true
				default:
					return p, fmt.Errorf("directive %q: unknown outcome", f)
				}
			case "exit":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return p, fmt.Errorf("directive %q: %w", f, err)
				}
				p.exitCode = n
				switch {
				case n == 0:
					p.outcome = Success
				case p.outcome == Success || !named:
					p.outcome = Failure
				}
			case "duration":
				lo, hi, err := ParseDurationRange(v)
				if err != nil {
					return p, fmt.Errorf("directive %q: %w", f, err)
				}
				p.duration = lo
				if hi > lo {
					p.duration += rand.N(hi - lo + 1)
				}
			case "output":
				n, err := ParseBytes(v)
				if err != nil {
					return p, fmt.Errorf("directive %q: %w", f, err)
				}
				p.output = n
			default:
				return p, fmt.Errorf("directive %q: unknown key (want outcome, exit, duration, output)", f)
			}
		}
	}
	return p, nil
}
