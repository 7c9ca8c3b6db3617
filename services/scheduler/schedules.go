package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// Schedule is a stored schedule. Its canonical form is upstream's: a when
// (per_pc, per_target, calendar, on) with upstream's fields, stored in
// upstream's key order. This backend's earlier form, a raw cron expression
// (with tz an IANA name, utc or local), is read and written as an
// extension; fields that form's writer sent and this backend does not know
// are kept in the stored JSON (Raw).
type Schedule struct {
	ID               string          `json:"id"`
	When             *When           `json:"when,omitempty"`
	JobID            string          `json:"job_id"`
	Cron             string          `json:"cron,omitempty"`
	TZ               string          `json:"tz"`
	Enabled          *bool           `json:"enabled"`
	Target           *Target         `json:"target"`
	Rollout          *Rollout        `json:"rollout,omitempty"`
	Jitter           HumanDuration   `json:"jitter,omitempty"`
	DeadlineAt       *string         `json:"deadline_at,omitempty"`
	Active           *Active         `json:"active,omitempty"`
	Constraints      *Constraints    `json:"constraints,omitempty"`
	OnFailure        *OnFailure      `json:"on_failure,omitempty"`
	StartingDeadline HumanDuration   `json:"starting_deadline,omitempty"`
	RunsOn           string          `json:"runs_on,omitempty"`
	Tags             []string        `json:"tags,omitempty"`
	Origin           json.RawMessage `json:"origin,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// IsEnabled is the enabled flag; absent means enabled.
func (s Schedule) IsEnabled() bool { return s.Enabled == nil || *s.Enabled }

// Mode is how a compiled schedule fires.
type Mode int

const (
	// ModeTick fires the whole target at every tick (calendar, cron).
	ModeTick Mode = iota
	// ModePerPC polls every minute and fires at each expected PC
	// without a success inside the cooldown.
	ModePerPC
	// ModePerTarget polls every minute and fires the whole target when
	// no roster member succeeded inside the cooldown.
	ModePerTarget
	// ModeAgent is ticked by the agents themselves (runs_on: agent, on:):
	// never by this backend.
	ModeAgent
)

// Compiled is a validated schedule, ready to compute ticks.
type Compiled struct {
	Schedule
	Spec     Ticker // nil for ModeAgent
	Mode     Mode
	Target   Target
	Jitter   time.Duration
	Deadline time.Duration // starting_deadline; 0 = no catch-up
	Cooldown time.Duration // reconcile: 0 = once
	// PerVersion: per_pc once_per_version, completions of the job's
	// current version only.
	PerVersion bool
	Loc        *time.Location
	Gates      gates
	Retry      *wire.Retry
	MaxConc    int // 0 = no cap
	Waves      []compiledWave
}

type compiledWave struct {
	Group string
	Delay time.Duration
}

// Compile validates a stored schedule, everything that needs no lookup:
// what create refuses but upstream's readers still take (a stored
// deadline_at, which the scheduler overwrites on every fire) passes.
func (s Schedule) Compile() (*Compiled, error) { return s.compile(false) }

// compile is Compile; create applies the create boundary's rules too.
func (s Schedule) compile(create bool) (*Compiled, error) {
	switch {
	case s.ID == "":
		return nil, api.BadRequest("id is required")
	case !validID(s.ID):
		return nil, api.BadRequest("invalid id %q: use letters, digits, '-', '_' and '.'", s.ID)
	case s.JobID == "":
		return nil, api.BadRequest("job_id is required")
	case !validID(s.JobID):
		return nil, api.BadRequest("invalid job_id %q: use letters, digits, '-', '_' and '.'", s.JobID)
	case s.When != nil && s.Cron != "":
		return nil, api.BadRequest("when and cron cannot be combined: cron is this backend's older form; write when")
	case s.When == nil && s.Cron == "":
		return nil, api.BadRequest("missing field `when` (or this backend's extension: cron is required)")
	}
	if s.When != nil {
		return s.compileWhen(create)
	}
	return s.compileCron(create)
}

func (s Schedule) compileWhen(create bool) (*Compiled, error) {
	loc, err := whenTZ(s.TZ)
	if err != nil {
		return nil, api.BadRequest("%v", err)
	}
	if s.RunsOn != "" && s.RunsOn != "backend" && s.RunsOn != "agent" {
		return nil, api.BadRequest("runs_on: unknown variant `%s`, expected `backend` or `agent`", s.RunsOn)
	}
	if err := s.validateUpstream(create); err != nil {
		return nil, err
	}
	c := &Compiled{Schedule: s, Loc: loc, Gates: compileGates(s, loc), Retry: s.lowerRetry()}
	if s.Target != nil {
		c.Target = s.Target.normalized()
		if err := c.Target.validateNames(); err != nil {
			return nil, err
		}
	}
	c.Jitter, _ = parseHumantime(string(s.Jitter))
	c.Deadline, _ = parseHumantime(string(s.StartingDeadline))
	if s.Constraints != nil && s.Constraints.MaxConcurrent != nil {
		c.MaxConc = int(*s.Constraints.MaxConcurrent)
	}
	if s.Rollout != nil {
		for _, w := range s.Rollout.Waves {
			d, _ := parseHumantime(w.Delay)
			c.Waves = append(c.Waves, compiledWave{Group: w.Group, Delay: d})
			if !wire.ValidToken(w.Group) {
				return nil, api.BadRequest("invalid rollout group %q", w.Group)
			}
		}
	}
	w := s.When
	switch {
	case s.RunsOn == "agent" || w.IsOn:
		c.Mode = ModeAgent
		if w.Calendar != nil {
			// Not ticked here, but previewed: the agents' calendar in
			// this node's zone.
			if cs, err := parseCalendar(*w.Calendar, loc); err == nil {
				c.Spec = cs
			}
		}
		return c, nil
	case w.Calendar != nil:
		cs, err := parseCalendar(*w.Calendar, loc)
		if err != nil {
			return nil, invalid("%v", err)
		}
		c.Spec, c.Mode = cs, ModeTick
	default:
		p := w.policy()
		c.Mode = ModePerPC
		if w.PerTarget != nil {
			c.Mode = ModePerTarget
		}
		c.PerVersion = p.Policy == "once_per_version"
		if p.Policy == "" {
			c.Cooldown, _ = parseHumantime(p.Every)
		}
		c.Spec = pollTicker
	}
	return c, nil
}

func (s Schedule) compileCron(create bool) (*Compiled, error) {
	if s.RunsOn != "" && s.RunsOn != "backend" {
		return nil, api.BadRequest("runs_on %q: a cron schedule is this backend's extension and runs on the backend only; write when for runs_on: agent", s.RunsOn)
	}
	if legacy := legacyFields(s.Raw); len(legacy) > 0 {
		return nil, api.BadRequest("pre-when upstream fields %s cannot be honoured (this backend would fire every tick): rewrite the schedule with when", strings.Join(legacy, ", "))
	}
	spec, err := ParseCron(s.Cron, s.TZ)
	if err != nil {
		return nil, api.BadRequest("%v", err)
	}
	c := &Compiled{Schedule: s, Spec: spec, Target: Target{All: true}, Loc: spec.Location(), Mode: ModeTick}
	if s.Target != nil {
		c.Target = s.Target.normalized()
		if err := c.Target.Validate(); err != nil {
			return nil, err
		}
	}
	if c.Jitter, err = s.Jitter.Duration(); err != nil {
		return nil, api.BadRequest("invalid jitter: %v", err)
	}
	if c.Deadline, err = s.StartingDeadline.Duration(); err != nil {
		return nil, api.BadRequest("invalid starting_deadline: %v", err)
	}
	if c.Jitter < 0 || c.Deadline < 0 {
		return nil, api.BadRequest("jitter and starting_deadline must not be negative")
	}
	if s.Rollout != nil {
		return nil, api.BadRequest("rollout needs the when form")
	}
	if create && s.DeadlineAt != nil {
		return nil, invalid("deadline_at is computed by the scheduler (tick time + starting_deadline) and overwritten on every fire — set `starting_deadline` instead")
	}
	if err := s.validateGates(spec.Location()); err != nil {
		return nil, err
	}
	if s.Constraints != nil && s.Constraints.MaxConcurrent != nil {
		c.MaxConc = int(*s.Constraints.MaxConcurrent)
	}
	c.Gates, c.Retry = compileGates(s, c.Loc), s.lowerRetry()
	return c, nil
}

// ParseSchedule decodes (JSON or YAML) and validates a schedule, fills in
// the defaults and returns the JSON to store, without the list's derived
// error field. A when-form schedule is checked as strictly as upstream's
// create (unknown keys at any depth are refused) and stored as upstream's
// model writes it; a cron-form one keeps every field it came with (tz
// default utc, enabled true, target all). Whether the job exists is checked
// by PutSchedule.
func ParseSchedule(data []byte, contentType string) (*Compiled, json.RawMessage, error) {
	doc, err := decodeDocument(data, contentType, "id", "job_id", "cron", "jitter", "starting_deadline")
	if err != nil {
		return nil, nil, err
	}
	// The list's error is derived, not part of a schedule: one edited
	// from a list item must not carry it into the bucket.
	delete(doc, "error")
	if _, isWhen := doc["when"]; isWhen {
		if unknown := unknownFields(doc, upstreamKeys); len(unknown) > 0 {
			return nil, nil, api.BadRequest("unknown field(s): %s — check for typos; fields must match the current schema", strings.Join(unknown, ", "))
		}
	}
	var s Schedule
	if err := bindDocument(doc, &s); err != nil {
		return nil, nil, err
	}
	if s.When == nil {
		if b, err := json.Marshal(doc); err == nil {
			s.Raw = b
		}
	}
	c, err := s.compile(true)
	if err != nil {
		return nil, nil, err
	}
	if s.When != nil {
		if s.TZ == "" {
			c.TZ = "local"
		}
		if s.RunsOn == "" {
			c.RunsOn = "backend"
		}
		t := true
		if s.Enabled == nil {
			c.Enabled = &t
		}
		raw, err := c.Schedule.encodeUpstream()
		if err != nil {
			return nil, nil, err
		}
		c.Raw = raw
		return c, raw, nil
	}
	if conv, ok := cronAsCalendar(s, doc); ok {
		return conv, conv.Raw, nil
	}
	// The cron extension: never an uppercase UTC, which upstream readers
	// cannot decode.
	switch {
	case s.TZ == "" || strings.EqualFold(s.TZ, "utc"):
		doc["tz"], c.TZ = "utc", "utc"
	case strings.EqualFold(s.TZ, "local"):
		doc["tz"], c.TZ = "local", "local"
	}
	if s.Enabled == nil {
		doc["enabled"] = true
		t := true
		c.Enabled = &t
	}
	doc["target"] = c.Target
	raw, err := api.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("encode schedule: %w", err)
	}
	c.Raw = raw
	return c, raw, nil
}

// decodeStored reads a schedule as stored in KV.
func decodeStored(b []byte) (Schedule, error) {
	var s Schedule
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("decode schedule: %w", err)
	}
	s.Raw = json.RawMessage(b)
	return s, nil
}

// ListSchedules returns every stored schedule, ordered by id.
func (c *Catalog) ListSchedules(ctx context.Context) ([]Schedule, error) {
	list, _, err := c.listSchedules(ctx)
	return list, err
}

// listSchedules also returns, by position, why a stored schedule does not
// decode (nil if it does); such a one is listed by key with its raw value.
func (c *Catalog) listSchedules(ctx context.Context) ([]Schedule, []error, error) {
	entries, err := listEntries(ctx, c.JS, c.Schedules)
	if err != nil {
		return nil, nil, fmt.Errorf("list schedules: %w", err)
	}
	out := make([]Schedule, len(entries))
	errs := make([]error, len(entries))
	for i, e := range entries {
		out[i], errs[i] = decodeStored(e.Value())
		if errs[i] != nil {
			out[i] = Schedule{ID: e.Key(), Raw: json.RawMessage(e.Value())}
		}
	}
	return out, errs, nil
}

// ListSchedulesChecked is the schedules list the API answers: every stored
// schedule whose key sorts after after ("" = from the start), by key, as
// stored, and for one that cannot be used (written to the bucket by
// something that did not validate it: upstream, a nats kv put) an "error"
// field with the reason, since the engine does not fire it. Only the
// schedules after the cursor are decoded and compiled: a paged list reads
// the keys again per page, not every schedule's rules.
func (c *Catalog) ListSchedulesChecked(ctx context.Context, after string) ([]CheckedSchedule, error) {
	entries, err := listEntries(ctx, c.JS, c.Schedules)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	slices.SortFunc(entries, func(a, b jetstream.KeyValueEntry) int { return strings.Compare(a.Key(), b.Key()) })
	var out []CheckedSchedule
	for _, e := range entries {
		if e.Key() <= after {
			continue
		}
		raw := json.RawMessage(e.Value())
		s, err := decodeStored(e.Value())
		if err == nil {
			_, err = s.Compile()
		}
		if err != nil {
			why := err.Error()
			if raw, err = withField(raw, "error", why); err != nil {
				// Not a JSON object at all: name it and say so.
				raw, _ = json.Marshal(map[string]string{"id": e.Key(), "error": why})
			}
		}
		out = append(out, CheckedSchedule{Key: e.Key(), Raw: raw})
	}
	return out, nil
}

// CheckedSchedule is one schedule of the list, its JSON as answered and
// its key (the page cursor).
type CheckedSchedule struct {
	Key string
	Raw json.RawMessage
}

// MarshalJSON is the schedule as answered.
func (s CheckedSchedule) MarshalJSON() ([]byte, error) { return s.Raw, nil }

// GetSchedule returns one schedule; 404 if unknown.
func (c *Catalog) GetSchedule(ctx context.Context, id string) (Schedule, error) {
	s, _, err := c.getSchedule(ctx, id)
	return s, err
}

func (c *Catalog) getSchedule(ctx context.Context, id string) (Schedule, uint64, error) {
	if !validID(id) {
		return Schedule{}, 0, api.NotFound("schedule %q not found", id)
	}
	e, err := c.kvGet(ctx, c.Schedules, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Schedule{}, 0, api.NotFound("schedule %q not found", id)
	}
	if err != nil {
		return Schedule{}, 0, fmt.Errorf("get schedule %s: %w", id, err)
	}
	s, err := decodeStored(e.value)
	if err != nil {
		return s, 0, fmt.Errorf("schedule %s: %w", id, err)
	}
	return s, e.revision, nil
}

// PutSchedule validates and stores a schedule (an upsert) and answers
// upstream's summary; 400 if its job is unknown. The YAML mirror gets the
// body when it was YAML, else a dump of what was stored.
func (c *Catalog) PutSchedule(ctx context.Context, data []byte, contentType string) (Summary, error) {
	s, raw, err := ParseSchedule(data, contentType)
	if err != nil {
		return Summary{}, err
	}
	if _, _, err := c.GetJob(ctx, s.JobID); err != nil {
		if isNotFound(err) {
			return Summary{}, api.BadRequest("unknown job_id '%s' — register the job first (kanade job create)", s.JobID)
		}
		return Summary{}, fmt.Errorf("job catalog lookup: %w", err)
	}
	if _, err := c.Schedules.Put(ctx, s.ID, raw); err != nil {
		return Summary{}, fmt.Errorf("put schedule %s: %w", s.ID, err)
	}
	c.putMirror(ctx, c.SchedulesYAML, s.ID, data, contentType, raw)
	return Summary{ID: s.ID, When: s.Display(), Enabled: s.IsEnabled(), JobID: s.JobID}, nil
}

// DeleteSchedule removes a schedule. Deleting one that is not there
// succeeds, as upstream's does: the outcome the caller asked for holds.
func (c *Catalog) DeleteSchedule(ctx context.Context, id string) error {
	if _, err := c.GetSchedule(ctx, id); err != nil {
		if isNotFound(err) {
			return nil // nor a delete marker for a key that never was
		}
		return err
	}
	if err := c.Schedules.Delete(ctx, id); err != nil {
		return fmt.Errorf("delete schedule %s: %w", id, err)
	}
	return nil
}

// SetEnabled turns a schedule on or off, keeping every other field; 404 if
// unknown. It updates on the revision it read, so a concurrent edit is not
// lost.
func (c *Catalog) SetEnabled(ctx context.Context, id string, on bool) error {
	for attempt := range 5 {
		if attempt > 0 {
			// Another writer changed the schedule between our read and
			// our update: back off a little and re-read.
			time.Sleep(time.Duration(attempt) * 20 * time.Millisecond)
		}
		s, rev, err := c.getSchedule(ctx, id)
		if err != nil {
			return err
		}
		if s.IsEnabled() == on && s.Enabled != nil {
			return nil // upstream: no write
		}
		// Only the enabled member changes: the stored key order (upstream's)
		// and every other byte stay.
		raw, err := setMember(s.Raw, "enabled", on)
		if err != nil {
			return fmt.Errorf("schedule %s: %w", id, err)
		}
		_, err = c.Schedules.Update(ctx, id, raw, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return fmt.Errorf("update schedule %s: %w", id, err)
		}
		if c.SchedulesYAML != nil {
			if e, err := c.SchedulesYAML.Get(ctx, id); err == nil {
				c.SchedulesYAML.Put(ctx, id, patchEnabledLine(e.Value(), on))
			}
		}
		return nil
	}
	return api.Conflict("schedule %q is being changed concurrently; retry", id)
}

// Upcoming is the next fire of one enabled schedule.
type Upcoming struct {
	ID      string `json:"id"`
	JobID   string `json:"job_id"`
	When    string `json:"when"` // the when display string ("at 09:00 [mon-fri]")
	NextRun string `json:"next_run"`
}

// Target names the agents a Command goes to: every agent, the agents of
// some groups, or some PCs (groups and pcs may be combined).
type Target struct {
	All    bool     `json:"all,omitempty"`
	Groups []string `json:"groups,omitempty"`
	PCs    []string `json:"pcs,omitempty"`
}

func (t Target) normalized() Target {
	return Target{All: t.All, Groups: dedupe(t.Groups), PCs: dedupe(t.PCs)}
}

func dedupe(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(in))
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Validate: a target names someone, and every name fits in a subject.
func (t Target) Validate() error {
	if t.All && (len(t.Groups) > 0 || len(t.PCs) > 0) {
		return api.BadRequest("invalid target: all cannot be combined with groups or pcs")
	}
	if !t.All && len(t.Groups) == 0 && len(t.PCs) == 0 {
		return api.BadRequest(`empty target: want {"all":true}, {"groups":[…]} or {"pcs":[…]}`)
	}
	return t.validateNames()
}

// validateNames: every group and pc name fits in a subject token.
func (t Target) validateNames() error {
	for _, g := range t.Groups {
		if !wire.ValidToken(g) {
			return api.BadRequest("invalid target group %q", g)
		}
	}
	for _, p := range t.PCs {
		if !wire.ValidToken(p) {
			return api.BadRequest("invalid target pc %q", p)
		}
	}
	return nil
}

// Subjects are the command subjects the target reaches.
func (t Target) Subjects() []string {
	if t.All {
		return []string{wire.SubjectCommandsAll}
	}
	out := make([]string, 0, len(t.Groups)+len(t.PCs))
	for _, g := range t.Groups {
		out = append(out, wire.CommandsGroup(g))
	}
	for _, p := range t.PCs {
		out = append(out, wire.CommandsPC(p))
	}
	return out
}

// cronAsCalendar rewrites a cron-form schedule as upstream's calendar when
// the two mean exactly the same fires: seconds 0 (or five fields), one
// minute, one hour, any day of month and month, a day-of-week list the
// calendar grammar reads, tz utc or local, and no field upstream's model
// lacks. Then upstream agents and backends can read what is stored.
func cronAsCalendar(s Schedule, doc map[string]any) (*Compiled, bool) {
	tz := strings.ToLower(s.TZ)
	if tz == "" {
		tz = "utc"
	}
	if tz != "utc" && tz != "local" {
		return nil, false
	}
	f := strings.Fields(s.Cron)
	if len(f) == 6 {
		if f[0] != "0" {
			return nil, false
		}
		f = f[1:]
	}
	if len(f) != 5 || (f[2] != "*" && f[2] != "?") || f[3] != "*" {
		return nil, false
	}
	digits := func(x string, maxV int) (int, bool) {
		if x == "" || len(x) > 2 || strings.Trim(x, "0123456789") != "" {
			return 0, false
		}
		n := 0
		for _, r := range x {
			n = n*10 + int(r-'0')
		}
		return n, n <= maxV
	}
	m, okM := digits(f[0], 59)
	h, okH := digits(f[1], 23)
	if !okM || !okH {
		return nil, false
	}
	cal := Calendar{At: fmt.Sprintf("%02d:%02d", h, m)}
	if f[4] != "*" && f[4] != "?" {
		if strings.Contains(f[4], "/") {
			return nil, false
		}
		cal.Days = strings.Split(f[4], ",")
	}
	rest := make(map[string]any, len(doc))
	for k, v := range doc {
		if k != "cron" {
			rest[k] = v
		}
	}
	if len(unknownFields(rest, upstreamKeys)) > 0 {
		return nil, false
	}
	w := s
	w.Cron, w.Raw, w.TZ = "", nil, tz
	w.When = &When{Calendar: &cal}
	if w.RunsOn == "" {
		w.RunsOn = "backend"
	}
	if w.Enabled == nil {
		t := true
		w.Enabled = &t
	}
	if w.Target == nil {
		w.Target = &Target{All: true}
	}
	// The cron form read bare numbers as seconds; upstream does not.
	for _, d := range []*HumanDuration{&w.Jitter, &w.StartingDeadline} {
		if *d != "" {
			if _, err := parseHumantime(string(*d)); err != nil {
				return nil, false
			}
		}
	}
	c, err := w.compile(true)
	if err != nil {
		return nil, false
	}
	raw, err := c.Schedule.encodeUpstream()
	if err != nil {
		return nil, false
	}
	c.Raw = raw
	return c, true
}
