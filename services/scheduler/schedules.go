package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// Schedule is a stored schedule: fire job JobID at every tick of Cron (in
// time zone TZ) on Target. Fields this backend does not know are kept in
// the stored JSON (Raw).
type Schedule struct {
	ID               string        `json:"id"`
	JobID            string        `json:"job_id"`
	Cron             string        `json:"cron"`
	TZ               string        `json:"tz"`
	Enabled          *bool         `json:"enabled"`
	Target           *Target       `json:"target"`
	Jitter           HumanDuration `json:"jitter,omitempty"`
	StartingDeadline HumanDuration `json:"starting_deadline,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// IsEnabled is the enabled flag; absent means enabled.
func (s Schedule) IsEnabled() bool { return s.Enabled == nil || *s.Enabled }

// Compiled is a validated schedule, ready to compute ticks.
type Compiled struct {
	Schedule
	Spec     *Spec
	Target   Target
	Jitter   time.Duration
	Deadline time.Duration // starting_deadline; 0 = no catch-up
}

// Compile validates everything about s that needs no lookup.
func (s Schedule) Compile() (*Compiled, error) {
	switch {
	case s.ID == "":
		return nil, api.BadRequest("id is required")
	case !validID(s.ID):
		return nil, api.BadRequest("invalid id %q: use letters, digits, '-', '_' and '.'", s.ID)
	case s.JobID == "":
		return nil, api.BadRequest("job_id is required")
	case !validID(s.JobID):
		return nil, api.BadRequest("invalid job_id %q: use letters, digits, '-', '_' and '.'", s.JobID)
	}
	spec, err := ParseCron(s.Cron, s.TZ)
	if err != nil {
		return nil, api.BadRequest("%v", err)
	}
	c := &Compiled{Schedule: s, Spec: spec, Target: Target{All: true}}
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
	return c, nil
}

// ParseSchedule decodes (JSON or YAML) and validates a schedule, fills in
// the defaults (tz UTC, enabled true, target all) and returns the JSON to
// store, without the list's derived error field. Whether the job exists is checked by PutSchedule.
func ParseSchedule(data []byte, contentType string) (*Compiled, json.RawMessage, error) {
	doc, err := decodeDocument(data, contentType, "id", "job_id", "cron")
	if err != nil {
		return nil, nil, err
	}
	// The list's error is derived, not part of a schedule: one edited
	// from a list item must not carry it into the bucket.
	delete(doc, "error")
	var s Schedule
	if err := bindDocument(doc, &s); err != nil {
		return nil, nil, err
	}
	c, err := s.Compile()
	if err != nil {
		return nil, nil, err
	}
	if s.TZ == "" {
		doc["tz"] = "UTC"
		c.TZ = "UTC"
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
// schedule as stored, and for one that cannot be used (written to the
// bucket by something that did not validate it: upstream, a nats kv put)
// an "error" field with the reason, since the engine does not fire it.
func (c *Catalog) ListSchedulesChecked(ctx context.Context) ([]json.RawMessage, error) {
	list, errs, err := c.listSchedules(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(list))
	for i, s := range list {
		out[i] = s.Raw
		err := errs[i]
		if err == nil {
			_, err = s.Compile()
		}
		if err == nil {
			continue
		}
		raw, ferr := withField(s.Raw, "error", err.Error())
		if ferr != nil {
			// Not a JSON object at all: name it and say so.
			raw, _ = json.Marshal(map[string]string{"id": s.ID, "error": err.Error()})
		}
		out[i] = raw
	}
	return out, nil
}

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

// PutSchedule validates and stores a schedule; 400 if its job is unknown.
func (c *Catalog) PutSchedule(ctx context.Context, data []byte, contentType string) (json.RawMessage, error) {
	s, raw, err := ParseSchedule(data, contentType)
	if err != nil {
		return nil, err
	}
	if _, _, err := c.GetJob(ctx, s.JobID); err != nil {
		if isNotFound(err) {
			return nil, api.BadRequest("unknown job_id %q", s.JobID)
		}
		return nil, err
	}
	if _, err := c.Schedules.Put(ctx, s.ID, raw); err != nil {
		return nil, fmt.Errorf("put schedule %s: %w", s.ID, err)
	}
	return raw, nil
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
		var doc map[string]any
		dec := json.NewDecoder(bytes.NewReader(s.Raw))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return fmt.Errorf("schedule %s: %w", id, err)
		}
		doc["enabled"] = on
		raw, err := api.Marshal(doc)
		if err != nil {
			return fmt.Errorf("encode schedule: %w", err)
		}
		_, err = c.Schedules.Update(ctx, id, raw, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return fmt.Errorf("update schedule %s: %w", id, err)
		}
		return nil
	}
	return api.Conflict("schedule %q is being changed concurrently; retry", id)
}

// Preview is the next fire times of one schedule.
type Preview struct {
	ID    string   `json:"id"`
	Fires []string `json:"fires"`
}

// Preview lists the next count (default 10, at most 1000) ticks after now,
// whether or not the schedule is enabled.
func (c *Catalog) Preview(ctx context.Context, id string, count int, now time.Time) (Preview, error) {
	if count < 0 {
		return Preview{}, api.BadRequest("count must not be negative")
	}
	if count == 0 {
		count = 10
	}
	count = min(count, 1000)
	s, err := c.GetSchedule(ctx, id)
	if err != nil {
		return Preview{}, err
	}
	comp, err := s.Compile()
	if err != nil {
		return Preview{}, fmt.Errorf("stored schedule %s is invalid: %w", id, err)
	}
	p := Preview{ID: id, Fires: []string{}}
	t := now
	for range count {
		t = comp.Spec.Next(t)
		if t.IsZero() {
			break
		}
		p.Fires = append(p.Fires, t.UTC().Format(time.RFC3339))
	}
	return p, nil
}

// Upcoming is the next fire of one enabled schedule.
type Upcoming struct {
	ID      string `json:"id"`
	JobID   string `json:"job_id"`
	Cron    string `json:"cron"`
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
