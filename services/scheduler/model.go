package scheduler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// The parts of upstream's Schedule beside when (§1 of the schedules spec).

// Rollout publishes the fire in waves, one group each, delay after publish.
type Rollout struct {
	Strategy string `json:"strategy"`
	Waves    []Wave `json:"waves"`
}

// Wave is one step of a rollout.
type Wave struct {
	Group string `json:"group"`
	Delay string `json:"delay"`
}

// Active is the validity window [from, until) of a schedule.
type Active struct {
	From  string `json:"from,omitempty"`
	Until string `json:"until,omitempty"`
}

// Constraints gate the fires: a wall-clock window, dates to skip, a fleet
// cap, and host-state gates only agents can sense.
type Constraints struct {
	Window        string   `json:"window,omitempty"`
	MaxConcurrent *int64   `json:"max_concurrent,omitempty"`
	SkipDates     []string `json:"skip_dates,omitempty"`
	Require       *Require `json:"require,omitempty"`
}

func (c *Constraints) empty() bool {
	return c == nil || c.Window == "" && c.MaxConcurrent == nil && len(c.SkipDates) == 0 && c.Require.empty()
}

// Require is agent-only host state.
type Require struct {
	ACPower  bool     `json:"ac_power,omitempty"`
	Idle     string   `json:"idle,omitempty"`
	CPUBelow *float64 `json:"cpu_below,omitempty"`
	Network  bool     `json:"network,omitempty"`
}

func (r *Require) empty() bool {
	return r == nil || !r.ACPower && r.Idle == "" && r.CPUBelow == nil && !r.Network
}

// OnFailure is the agent's in-process retry.
type OnFailure struct {
	Retry *RetryPolicy `json:"retry,omitempty"`
}

// RetryPolicy counts additional attempts (max 3 = at most 4 runs).
type RetryPolicy struct {
	Max     int64  `json:"max"`
	Backoff string `json:"backoff"`
}

// upstreamTarget is the target as upstream writes it: all three keys, in
// this order.
type upstreamTarget struct {
	Groups []string `json:"groups"`
	PCs    []string `json:"pcs"`
	All    bool     `json:"all"`
}

// upstreamSchedule is a when-form schedule in upstream's key order, with
// the keys upstream always writes (target, tz, runs_on, enabled) and the
// others only when set.
type upstreamSchedule struct {
	ID               string          `json:"id"`
	When             *When           `json:"when"`
	JobID            string          `json:"job_id"`
	Target           upstreamTarget  `json:"target"`
	Rollout          *Rollout        `json:"rollout,omitempty"`
	Jitter           string          `json:"jitter,omitempty"`
	DeadlineAt       string          `json:"deadline_at,omitempty"`
	Active           *Active         `json:"active,omitempty"`
	Constraints      *Constraints    `json:"constraints,omitempty"`
	OnFailure        *OnFailure      `json:"on_failure,omitempty"`
	TZ               string          `json:"tz"`
	StartingDeadline string          `json:"starting_deadline,omitempty"`
	RunsOn           string          `json:"runs_on"`
	Enabled          bool            `json:"enabled"`
	Tags             []string        `json:"tags,omitempty"`
	Origin           json.RawMessage `json:"origin,omitempty"`
}

// encodeUpstream is the JSON a when-form schedule is stored as: what
// upstream's model writes for it, defaults filled in.
func (s Schedule) encodeUpstream() (json.RawMessage, error) {
	u := upstreamSchedule{
		ID: s.ID, When: s.When, JobID: s.JobID, Rollout: s.Rollout, Jitter: string(s.Jitter),
		Active: s.Active, OnFailure: s.OnFailure, TZ: s.TZ, StartingDeadline: string(s.StartingDeadline),
		RunsOn: s.RunsOn, Enabled: s.IsEnabled(), Tags: s.Tags, Origin: s.Origin,
		Target: upstreamTarget{Groups: []string{}, PCs: []string{}},
	}
	if s.DeadlineAt != nil {
		u.DeadlineAt = *s.DeadlineAt
	}
	if s.Target != nil {
		u.Target.All = s.Target.All
		if s.Target.Groups != nil {
			u.Target.Groups = s.Target.Groups
		}
		if s.Target.PCs != nil {
			u.Target.PCs = s.Target.PCs
		}
	}
	if u.Active != nil && u.Active.From == "" && u.Active.Until == "" {
		u.Active = nil
	}
	if !s.Constraints.empty() {
		c := *s.Constraints
		if c.Require.empty() {
			c.Require = nil
		}
		u.Constraints = &c
	}
	if u.OnFailure != nil && u.OnFailure.Retry == nil {
		u.OnFailure = nil
	}
	if u.TZ == "" {
		u.TZ = "local"
	}
	if u.RunsOn == "" {
		u.RunsOn = "backend"
	}
	if u.Rollout != nil && u.Rollout.Strategy == "" {
		r := *u.Rollout
		r.Strategy = "wave"
		u.Rollout = &r
	}
	b, err := api.Marshal(u)
	if err != nil {
		return nil, fmt.Errorf("encode schedule: %w", err)
	}
	return b, nil
}

// invalid is upstream's 400 for a failed Schedule::validate.
func invalid(format string, args ...any) error {
	return api.BadRequest("invalid schedule: "+format, args...)
}

// validateUpstream is upstream's Schedule::validate, in its order; the
// first error wins and the texts are upstream's. Without create, a stored
// deadline_at (which readers take) passes.
func (s Schedule) validateUpstream(create bool) error {
	w := s.When
	agent := s.RunsOn == "agent"
	switch {
	case w.PerTarget != nil && agent:
		return invalid("when.per_target needs fleet-wide completion data and is backend-only; it cannot be combined with runs_on: agent (each agent self-schedules, so per-target dedup would be deduping across a target of 1)")
	case w.PerTarget != nil && w.PerTarget.Policy == "once_per_version":
		return invalid("when.per_target: once_per_version is not supported — once_per_version re-arms per pc per manifest version, which only makes sense for per_pc. Use `per_pc: once_per_version`.")
	case w.PerPC != nil && w.PerPC.Policy == "once_per_version" && agent:
		return invalid("when.per_pc: once_per_version keys its dedup on the backend's per-version completion history and is backend-only; it cannot be combined with runs_on: agent (the agent self-schedules with no per-version record). Use runs_on: backend.")
	case w.IsOn && !agent:
		return invalid("when.on (OS event trigger) is fired by the agent's own event source, so it requires runs_on: agent")
	case w.IsOn && len(w.On) == 0:
		return invalid("when.on must list at least one trigger (e.g. [startup, logon])")
	}
	if p := w.policy(); p != nil && p.Policy == "" {
		if _, err := parseHumantime(p.Every); err != nil {
			return invalid("when.every: invalid duration '%s': %v", p.Every, err)
		}
	}
	if w.Calendar != nil {
		if _, err := parseCalendar(*w.Calendar, time.UTC); err != nil {
			return invalid("%v", err)
		}
	}
	if s.Jitter != "" {
		if _, err := parseHumantime(string(s.Jitter)); err != nil {
			return invalid("jitter: invalid duration '%s': %v", s.Jitter, err)
		}
	}
	var deadline time.Duration
	sdOK := false
	if s.StartingDeadline != "" {
		d, err := parseHumantime(string(s.StartingDeadline))
		if err != nil {
			return invalid("starting_deadline: invalid duration '%s': %v", s.StartingDeadline, err)
		}
		deadline, sdOK = d, true
	}
	t := Target{}
	if s.Target != nil {
		t = *s.Target
	}
	unspecified := !t.All && len(t.Groups) == 0 && len(t.PCs) == 0
	if agent {
		if unspecified {
			return invalid("target must specify at least one of `all` / `groups` / `pcs` — a runs_on: agent schedule matches each agent against `target`, so an unspecified target never fires anywhere")
		}
		if s.Rollout != nil {
			return invalid("rollout waves are published by the backend and are ignored by runs_on: agent schedules (each agent self-schedules from `target`); drop `rollout:` or use runs_on: backend")
		}
	} else if unspecified && (s.Rollout == nil || len(s.Rollout.Waves) == 0) {
		return invalid("target must specify at least one of `all` / `groups` / `pcs` (or set `rollout.waves`) — the exec boundary rejects an unspecified target, so the schedule would fail every tick")
	}
	if s.Rollout != nil {
		if len(s.Rollout.Waves) == 0 {
			return invalid("rollout.waves must list at least one wave; omit `rollout:` for a one-shot fan-out of `target` ")
		}
		for i, wv := range s.Rollout.Waves {
			if strings.TrimSpace(wv.Group) == "" {
				return invalid("rollout.waves[%d].group must not be blank", i)
			}
			d, err := parseHumantime(wv.Delay)
			if err != nil {
				return invalid("rollout.waves[%d].delay: invalid duration '%s': %v", i, wv.Delay, err)
			}
			if sdOK && d >= deadline {
				return invalid("rollout.waves[%d].delay ('%s') must be shorter than starting_deadline ('%s'): the deadline is stamped at tick time, so this wave's Commands would already be expired when published (skipped by every agent, every fire)", i, wv.Delay, s.StartingDeadline)
			}
		}
	}
	if create && s.DeadlineAt != nil {
		return invalid("deadline_at is computed by the scheduler (tick time + starting_deadline) and overwritten on every fire — set `starting_deadline` instead")
	}
	loc, _ := whenTZ(s.TZ)
	return s.validateGates(loc)
}

// validateGates checks active and constraints (upstream rows 11-17) in
// the schedule's zone: the part of validate the cron extension shares.
func (s Schedule) validateGates(loc *time.Location) error {
	if loc == nil {
		loc = time.UTC
	}
	agent := s.RunsOn == "agent"
	if a := s.Active; a != nil {
		var from, until time.Time
		for i, b := range []string{a.From, a.Until} {
			if b == "" {
				continue
			}
			t, err := parseBound(b, loc)
			if err != nil {
				return invalid("active: %v", err)
			}
			if i == 0 {
				from = t
			} else {
				until = t
			}
		}
		if !from.IsZero() && !until.IsZero() && !from.Before(until) {
			return invalid("active.from (%s) must be strictly before active.until (%s)", a.From, a.Until)
		}
	}
	if c := s.Constraints; c != nil {
		if c.Window != "" {
			if _, err := parseWindow(c.Window); err != nil {
				return invalid("%v", err)
			}
		}
		for _, d := range c.SkipDates {
			if _, err := time.Parse("2006-01-02", d); err != nil {
				return invalid("constraints.skip_dates: invalid date '%s': input contains invalid characters", d)
			}
		}
		if c.MaxConcurrent != nil {
			if agent {
				return invalid("constraints.max_concurrent needs a central counter and is backend-only; it cannot be combined with runs_on: agent (each agent self-schedules, so there is no fleet-wide count to cap against)")
			}
			if *c.MaxConcurrent < 1 {
				return invalid("constraints.max_concurrent must be >= 1 (0 would never fire; omit it for no cap)")
			}
		}
		if r := c.Require; !r.empty() {
			if !agent {
				return invalid("constraints.require (host-state env gates: ac_power / idle / cpu_below / network) is sensed in-process by the agent and needs runs_on: agent; the backend cannot read a target host's power / idle / cpu / connectivity state")
			}
			if r.Idle != "" {
				if _, err := parseHumantime(r.Idle); err != nil {
					return invalid("constraints.require.idle: invalid duration '%s': %v", r.Idle, err)
				}
			}
			if r.CPUBelow != nil && (*r.CPUBelow <= 0 || *r.CPUBelow > 100) {
				return invalid("constraints.require.cpu_below must be in (0, 100] percent (got %v); omit it for no CPU requirement", *r.CPUBelow)
			}
		}
	}
	if of := s.OnFailure; of != nil && of.Retry != nil {
		b, err := parseHumantime(of.Retry.Backoff)
		if err != nil {
			return invalid("on_failure.retry.backoff: invalid duration '%s': %v", of.Retry.Backoff, err)
		}
		if b < time.Second {
			return invalid("on_failure.retry.backoff must be >= 1s (got '%s'); sub-second backoffs round to 0 on the wire", of.Retry.Backoff)
		}
		if of.Retry.Max < 1 || of.Retry.Max > 10 {
			return invalid("on_failure.retry.max must be 1..=10 (got %d); it counts additional attempts after the first run", of.Retry.Max)
		}
	}
	for _, tag := range s.Tags {
		if strings.TrimSpace(tag) == "" {
			return invalid("tags must not contain empty entries")
		}
	}
	return nil
}

// whenTZ is a when-form tz: only upstream's two values (an IANA name is
// this backend's extension, in the cron form only).
func whenTZ(tz string) (*time.Location, error) {
	switch tz {
	case "", "local":
		return time.Local, nil
	case "utc":
		return time.UTC, nil
	}
	return nil, fmt.Errorf("tz: unknown variant `%s`, expected `local` or `utc`", tz)
}

// upstreamKeys is the schema of upstream's Schedule for the create
// boundary's unknown-field check: a key maps to the schema of its value
// (nil = a leaf), "[]" to the schema of a list's items.
var upstreamKeys = map[string]any{
	"id": nil, "job_id": nil, "jitter": nil, "deadline_at": nil, "tz": nil, "starting_deadline": nil,
	"runs_on": nil, "enabled": nil, "tags": nil,
	"when": map[string]any{
		"per_pc": map[string]any{"every": nil}, "per_target": map[string]any{"every": nil},
		"calendar": map[string]any{"at": nil, "days": nil}, "on": nil,
	},
	"target":  map[string]any{"groups": nil, "pcs": nil, "all": nil},
	"rollout": map[string]any{"strategy": nil, "waves": map[string]any{"[]": map[string]any{"group": nil, "delay": nil}}},
	"active":  map[string]any{"from": nil, "until": nil},
	"constraints": map[string]any{"window": nil, "max_concurrent": nil, "skip_dates": nil,
		"require": map[string]any{"ac_power": nil, "idle": nil, "cpu_below": nil, "network": nil}},
	"on_failure": map[string]any{"retry": map[string]any{"max": nil, "backoff": nil}},
	"origin":     map[string]any{"path": nil, "repo": nil, "script_file": nil},
}

// unknownFields lists the dotted paths of doc's keys outside schema,
// sorted, as upstream's strict create guard names them.
func unknownFields(doc map[string]any, schema map[string]any) []string {
	var out []string
	var walk func(prefix string, v any, sch map[string]any)
	walk = func(prefix string, v any, sch map[string]any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				sub, known := sch[k]
				if !known {
					out = append(out, prefix+k)
					continue
				}
				if m, ok := sub.(map[string]any); ok {
					walk(prefix+k+".", val, m)
				}
			}
		case []any:
			if items, ok := sch["[]"].(map[string]any); ok {
				for i, it := range x {
					walk(fmt.Sprintf("%s%d.", prefix, i), it, items)
				}
			}
		}
	}
	walk("", doc, schema)
	sort.Strings(out)
	return out
}

// Summary is upstream's answer to a create: the when display string.
type Summary struct {
	ID      string `json:"id"`
	When    string `json:"when"`
	Enabled bool   `json:"enabled"`
	JobID   string `json:"job_id"`
}

// Display is the schedule's cadence in upstream's display form; a cron
// extension schedule shows as "cron <expr>".
func (s Schedule) Display() string {
	if s.When != nil {
		return s.When.String()
	}
	return "cron " + s.Cron
}

// legacyUpstreamKeys are pre-#418 upstream fields this backend cannot
// honour in a cron blob (upstream itself no longer reads such blobs).
var legacyUpstreamKeys = []string{"mode", "cooldown", "auto_disable_when_done", "manifest"}

// legacyFields names the legacy keys raw carries that change what firing
// means ("mode": "every_tick" is what the cron form does anyway).
func legacyFields(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	var out []string
	for _, k := range legacyUpstreamKeys {
		v, ok := m[k]
		if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			continue
		}
		if k == "mode" && string(bytes.TrimSpace(v)) == `"every_tick"` {
			continue
		}
		if k == "auto_disable_when_done" && string(bytes.TrimSpace(v)) == "false" {
			continue
		}
		out = append(out, k)
	}
	return out
}

// lowerRetry is on_failure.retry on the wire.
func (s Schedule) lowerRetry() *wire.Retry {
	if s.OnFailure == nil || s.OnFailure.Retry == nil {
		return nil
	}
	b, err := parseHumantime(s.OnFailure.Retry.Backoff)
	if err != nil {
		return nil
	}
	return &wire.Retry{Max: int(s.OnFailure.Retry.Max), BackoffSecs: int(b / time.Second)}
}
