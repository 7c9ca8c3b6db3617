package scheduler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/kanade-go/kanade/services/api"
)

// When is upstream's cadence of a schedule, an externally tagged enum: one
// of per_pc, per_target, calendar or on. Its JSON is upstream's byte for
// byte ({"per_pc":"once"}, {"per_pc":{"every":"6h"}},
// {"calendar":{"at":"09:00","days":["mon-fri"]}}, {"on":["startup"]}).
type When struct {
	PerPC     *Per
	PerTarget *Per
	Calendar  *Calendar
	On        []string // with IsOn
	IsOn      bool
}

// Per is upstream's PerPolicy: the bare string once (or once_per_version),
// or {every: <humantime>}.
type Per struct {
	Policy string // "once", "once_per_version" or "" with Every
	Every  string
}

// Calendar fires at a wall time ("09:00") on some days, or once at a date
// and time ("2026-06-10 09:00").
type Calendar struct {
	At   string  `json:"at"`
	Days DayList `json:"days,omitempty"`
}

// DayList is calendar.days. YAML may write a day as a number (days: [1, 5]),
// which upstream's YAML reader takes as its text; so does this.
type DayList []string

// UnmarshalJSON accepts strings and numbers.
func (d *DayList) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("days: expected a sequence of strings")
	}
	out := make(DayList, 0, len(raw))
	for _, r := range raw {
		var s string
		if err := json.Unmarshal(r, &s); err == nil {
			out = append(out, s)
			continue
		}
		if n, err := strconv.ParseInt(string(bytes.TrimSpace(r)), 10, 64); err == nil {
			out = append(out, strconv.FormatInt(n, 10))
			continue
		}
		return fmt.Errorf("days: expected a string, got %s", r)
	}
	*d = out
	return nil
}

// onTriggers are the OS events agents fire `on:` schedules for.
var onTriggers = []string{"startup", "logon", "lock", "unlock", "network_change"}

// MarshalJSON writes upstream's externally tagged form.
func (w When) MarshalJSON() ([]byte, error) {
	var key string
	var val any
	switch {
	case w.PerPC != nil:
		key, val = "per_pc", w.PerPC
	case w.PerTarget != nil:
		key, val = "per_target", w.PerTarget
	case w.Calendar != nil:
		key, val = "calendar", w.Calendar
	case w.IsOn:
		key, val = "on", w.On
		if w.On == nil {
			val = []string{}
		}
	default:
		return nil, errors.New("when: no variant set")
	}
	b, err := api.Marshal(val)
	if err != nil {
		return nil, err
	}
	return []byte(`{"` + key + `":` + string(b) + `}`), nil
}

// UnmarshalJSON reads upstream's When; the messages follow serde's.
func (w *When) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		var s string
		if json.Unmarshal(b, &s) == nil {
			return fmt.Errorf("when: unknown variant `%s`, expected one of `per_pc`, `per_target`, `calendar`, `on`", s)
		}
		return fmt.Errorf("when: invalid type: expected a map with a single key")
	}
	if len(m) != 1 {
		return fmt.Errorf("when: expected a map with exactly one key (per_pc, per_target, calendar or on), got %d", len(m))
	}
	*w = When{}
	for k, v := range m {
		switch k {
		case "per_pc", "per_target":
			var p Per
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("when.%s: %v", k, err)
			}
			if k == "per_pc" {
				w.PerPC = &p
			} else {
				w.PerTarget = &p
			}
		case "calendar":
			var c struct {
				At   *string `json:"at"`
				Days DayList `json:"days"`
			}
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("when.calendar: %v", err)
			}
			if c.At == nil {
				return fmt.Errorf("when.calendar: missing field `at`")
			}
			w.Calendar = &Calendar{At: *c.At, Days: c.Days}
		case "on":
			var on []string
			if err := json.Unmarshal(v, &on); err != nil {
				return fmt.Errorf("when.on: expected a sequence of triggers")
			}
			for _, t := range on {
				if !contains(onTriggers, t) {
					return fmt.Errorf("when.on: unknown variant `%s`, expected one of `startup`, `logon`, `lock`, `unlock`, `network_change`", t)
				}
			}
			w.On, w.IsOn = on, true
		default:
			return fmt.Errorf("when: unknown variant `%s`, expected one of `per_pc`, `per_target`, `calendar`, `on`", k)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// MarshalJSON writes "once", "once_per_version" or {"every":…}.
func (p Per) MarshalJSON() ([]byte, error) {
	if p.Policy != "" {
		return json.Marshal(p.Policy)
	}
	return api.Marshal(struct {
		Every string `json:"every"`
	}{p.Every})
}

// UnmarshalJSON reads the untagged PerPolicy.
func (p *Per) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if s != "once" && s != "once_per_version" {
			return fmt.Errorf("data did not match any variant of untagged enum PerPolicy (got %q; want once, once_per_version or {every: <duration>})", s)
		}
		*p = Per{Policy: s}
		return nil
	}
	var o struct {
		Every *string `json:"every"`
	}
	if err := json.Unmarshal(b, &o); err != nil || o.Every == nil {
		return fmt.Errorf("data did not match any variant of untagged enum PerPolicy (want once, once_per_version or {every: <duration>})")
	}
	*p = Per{Every: *o.Every}
	return nil
}

// String is upstream's When display: "per_pc once", "per_pc every 6h",
// "at 09:00 [mon-fri]", "on [startup,logon]".
func (w When) String() string {
	per := func(name string, p *Per) string {
		if p.Policy != "" {
			return name + " " + p.Policy
		}
		return name + " every " + p.Every
	}
	switch {
	case w.PerPC != nil:
		return per("per_pc", w.PerPC)
	case w.PerTarget != nil:
		return per("per_target", w.PerTarget)
	case w.Calendar != nil:
		if len(w.Calendar.Days) == 0 {
			return "at " + w.Calendar.At
		}
		return "at " + w.Calendar.At + " [" + strings.Join(w.Calendar.Days, ",") + "]"
	case w.IsOn:
		return "on [" + strings.Join(w.On, ",") + "]"
	}
	return ""
}

// Reconcile reports whether w polls (per_pc, per_target) rather than ticks.
func (w When) Reconcile() bool { return w.PerPC != nil || w.PerTarget != nil }

// policy is the reconcile shape's Per.
func (w When) policy() *Per {
	if w.PerPC != nil {
		return w.PerPC
	}
	return w.PerTarget
}

// parseHumantime is Rust humantime's parse_duration, which upstream uses
// for every duration of a when-form schedule: a bare number has no unit
// and is an error. The messages are humantime's.
func parseHumantime(s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return 0, errors.New("value was empty")
	}
	var total time.Duration
	i := 0
	for i < len(s) {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i >= len(s) {
			break
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			if unicode.IsLetter(rune(s[i])) {
				return 0, fmt.Errorf("expected number at %d", i)
			}
			return 0, fmt.Errorf("invalid character at %d", i)
		}
		n, err := strconv.ParseInt(s[start:i], 10, 64)
		if err != nil {
			return 0, errors.New("number is too large")
		}
		for i < len(s) && s[i] == ' ' {
			i++
		}
		us := i
		for i < len(s) && s[i] != ' ' && (s[i] < '0' || s[i] > '9') {
			i++
		}
		unitText := s[us:i]
		if unitText == "" {
			return 0, fmt.Errorf("time unit needed, for example %dsec or %dms", n, n)
		}
		unit, ok := humanUnits[unitText]
		if !ok {
			return 0, fmt.Errorf("unknown time unit %q, supported units: ns, us, ms, sec, min, hours, days, weeks, months, years (and few variations)", unitText)
		}
		if n > int64(math.MaxInt64/unit) || total > math.MaxInt64-time.Duration(n)*unit {
			return 0, errors.New("number is too large")
		}
		total += time.Duration(n) * unit
	}
	return total, nil
}
