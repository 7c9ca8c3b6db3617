package scheduler

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// isYAML reports whether a Content-Type names YAML, as upstream reads it.
func isYAML(contentType string) bool {
	ct, _, _ := strings.Cut(strings.ToLower(contentType), ";")
	switch strings.TrimSpace(ct) {
	case "application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml":
		return true
	}
	return false
}

// jsonToYAML dumps a JSON document as YAML, keys in their JSON order.
func jsonToYAML(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	n, err := yamlNodeOf(dec)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	enc.Close()
	return buf.Bytes(), nil
}

func yamlNodeOf(dec *json.Decoder) (*yaml.Node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := yamlNodeOf(dec)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k.(string)}, v)
			}
			_, err := dec.Token()
			return n, err
		}
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for dec.More() {
			v, err := yamlNodeOf(dec)
			if err != nil {
				return nil, err
			}
			if v.Kind != yaml.ScalarNode {
				n.Style = 0
			}
			n.Content = append(n.Content, v)
		}
		_, err := dec.Token()
		return n, err
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t}, nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(t.String(), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: t.String()}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(t)}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// putMirror writes a YAML mirror, best effort: the body itself when it was
// YAML, else a dump of the stored JSON.
func (c *Catalog) putMirror(ctx context.Context, kv jetstream.KeyValue, id string, body []byte, contentType string, stored []byte) {
	if kv == nil {
		return
	}
	text := body
	if !isYAML(contentType) {
		var err error
		if text, err = jsonToYAML(stored); err != nil {
			return
		}
	}
	kv.Put(ctx, id, text)
}

// mirrorYAML answers GET …/yaml: the mirror when there is one (and it is
// UTF-8), else a dump of the stored JSON.
func mirrorYAML(ctx context.Context, kv jetstream.KeyValue, id string, stored func() ([]byte, error)) (api.Reply, error) {
	if kv != nil && validID(id) {
		if e, err := kv.Get(ctx, id); err == nil && utf8.Valid(e.Value()) {
			return yamlReply(e.Value()), nil
		}
	}
	raw, err := stored()
	if err != nil {
		return api.Reply{}, err
	}
	y, err := jsonToYAML(raw)
	if err != nil {
		return api.Reply{}, fmt.Errorf("encode YAML: %w", err)
	}
	return yamlReply(y), nil
}

// yamlReply answers with a YAML document.
func yamlReply(b []byte) api.Reply {
	return api.Reply{Header: map[string]string{"Content-Type": "application/yaml"}, Body: b}
}

// ScheduleYAML is GET /api/schedules/{id}/yaml.
func (c *Catalog) ScheduleYAML(ctx context.Context, id string) (api.Reply, error) {
	return mirrorYAML(ctx, c.SchedulesYAML, id, func() ([]byte, error) {
		s, err := c.GetSchedule(ctx, id)
		if isNotFound(err) {
			return nil, api.NotFound("schedule '%s' not found", id)
		}
		return s.Raw, err
	})
}

// JobYAML is GET /api/jobs/{id}/yaml.
func (c *Catalog) JobYAML(ctx context.Context, id string) (api.Reply, error) {
	return mirrorYAML(ctx, c.JobsYAML, id, func() ([]byte, error) {
		_, raw, err := c.GetJob(ctx, id)
		if isNotFound(err) {
			return nil, api.NotFound("job '%s' not found", id)
		}
		return raw, err
	})
}

// setMember returns the JSON object raw with its top-level member key set
// to val, in place, every other byte kept (so upstream's key order
// survives); a member not there is appended.
func setMember(raw json.RawMessage, key string, val any) (json.RawMessage, error) {
	vb, err := api.Marshal(val)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, err
		}
		start := dec.InputOffset()
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if k == key {
			end := dec.InputOffset()
			out := append([]byte{}, raw[:start]...)
			out = append(out, ':')
			out = append(out, vb...)
			return append(out, raw[end:]...), nil
		}
	}
	return withField(raw, key, val)
}

// patchEnabledLine is upstream's YAML mirror patch: the first line starting
// with "enabled:" at column 0 is replaced, or one is appended.
func patchEnabledLine(y []byte, on bool) []byte {
	line := fmt.Sprintf("enabled: %v", on)
	lines := strings.Split(string(y), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "enabled:") {
			lines[i] = line
			return []byte(strings.Join(lines, "\n"))
		}
	}
	s := string(y)
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return []byte(s + line + "\n")
}

// DisableReply is what a disable did beyond the flag.
type disableResult struct {
	KilledExecs int
}

// Disable turns a schedule off; cascade revokes its job (script_status
// REVOKED, which agents honour for queued and replayed Commands), and
// cascade_kill sends kill.<exec_id> to the job's executions in flight.
func (c *Catalog) Disable(ctx context.Context, id string, cascade, cascadeKill bool) (disableResult, error) {
	var res disableResult
	if err := c.SetEnabled(ctx, id, false); err != nil {
		return res, err
	}
	s, err := c.GetSchedule(ctx, id)
	if err != nil {
		return res, err
	}
	if cascade {
		if c.ScriptStatus == nil {
			return res, api.Unavailable("script_status bucket missing")
		}
		if _, err := c.ScriptStatus.Put(ctx, s.JobID, []byte("REVOKED")); err != nil {
			return res, fmt.Errorf("script_status put: %w", err)
		}
	}
	if cascadeKill && c.DB != nil && c.Conn != nil {
		rows, err := c.DB.R.QueryContext(ctx, `SELECT DISTINCT exec_id FROM execution_results
			WHERE job_id = ? AND finished_at IS NULL AND exec_id IS NOT NULL`, s.JobID)
		if err == nil {
			var ids []string
			for rows.Next() {
				var e string
				if rows.Scan(&e) == nil {
					ids = append(ids, e)
				}
			}
			rows.Close()
			for _, e := range ids {
				if c.Conn.Publish(wire.Kill(e), nil) == nil {
					res.KilledExecs++
				}
			}
			c.Conn.Flush()
		}
	}
	return res, nil
}

// PreviewReply is upstream's preview.
type PreviewReply struct {
	ID      string   `json:"id"`
	When    string   `json:"when"`
	TZ      string   `json:"tz"`
	Enabled bool     `json:"enabled"`
	Fires   []string `json:"fires"`
	Note    string   `json:"note,omitempty"`
}

// rfc3339Chrono formats an instant as chrono's to_rfc3339 does for UTC:
// a +00:00 offset, not Z.
func rfc3339Chrono(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.999999999-07:00")
}

// fires lists up to count fires after now that pass active and the
// constraints (not the freeze: it is fleet state, not the schedule's).
func (c *Compiled) fires(now time.Time, count int) []string {
	out := []string{}
	if c.Spec == nil || c.Mode != ModeTick && c.Mode != ModeAgent {
		return out
	}
	t := now
	for range 4096 {
		t = c.Spec.Next(t)
		if t.IsZero() {
			break
		}
		if c.Gates.blocked(t) != "" {
			continue
		}
		out = append(out, rfc3339Chrono(t))
		if len(out) >= count {
			break
		}
	}
	return out
}

// Preview is GET /api/schedules/{id}/preview: count (default 5, 1..50)
// fires after now, whether or not the schedule is enabled.
func (c *Catalog) Preview(ctx context.Context, id string, count int, now time.Time) (PreviewReply, error) {
	if count <= 0 {
		count = 5
	}
	count = min(count, 50)
	comp, err := c.compiled(ctx, id)
	if err != nil {
		return PreviewReply{}, err
	}
	p := PreviewReply{ID: id, When: comp.Display(), TZ: comp.TZ, Enabled: comp.IsEnabled(), Fires: comp.fires(now, count)}
	if p.TZ == "" {
		p.TZ = "local"
	}
	if len(p.Fires) == 0 {
		if comp.Mode == ModeTick || comp.When != nil && comp.When.Calendar != nil {
			p.Note = "no upcoming fires — a past one-shot, or the fire time is excluded by the active window / constraints.window"
		} else {
			p.Note = fmt.Sprintf("reconcile cadence (%s) polls every minute gated by cooldown — no discrete fire times to preview", comp.Display())
		}
	}
	return p, nil
}

// compiled reads and compiles one stored schedule.
func (c *Catalog) compiled(ctx context.Context, id string) (*Compiled, error) {
	s, err := c.GetSchedule(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil, api.NotFound("schedule '%s' not found", id)
		}
		return nil, err
	}
	comp, err := s.Compile()
	if err != nil {
		return nil, fmt.Errorf("deserialize stored schedule: %w", err)
	}
	return comp, nil
}

// LastRun is the newest result of a schedule's job.
type LastRun struct {
	PCID       string  `json:"pc_id"`
	ExitCode   *int64  `json:"exit_code"`
	StartedAt  *string `json:"started_at"`
	FinishedAt *string `json:"finished_at"`
}

// StatusReply is upstream's status.
type StatusReply struct {
	ID      string   `json:"id"`
	When    string   `json:"when"`
	TZ      string   `json:"tz"`
	Enabled bool     `json:"enabled"`
	NextRun *string  `json:"next_run"`
	LastRun *LastRun `json:"last_run"`
	Recent  Recent   `json:"recent"`
}

// Recent counts the job's finished results of the last 24 hours.
type Recent struct {
	WindowHours int `json:"window_hours"`
	OK          int `json:"ok"`
	Fail        int `json:"fail"`
	Skipped     int `json:"skipped"`
}

// Status is GET /api/schedules/{id}/status, keyed by job_id as upstream.
func (c *Catalog) Status(ctx context.Context, id string, now time.Time) (StatusReply, error) {
	comp, err := c.compiled(ctx, id)
	if err != nil {
		return StatusReply{}, err
	}
	st := StatusReply{ID: id, When: comp.Display(), TZ: comp.TZ, Enabled: comp.IsEnabled(), Recent: Recent{WindowHours: 24}}
	if st.TZ == "" {
		st.TZ = "local"
	}
	if f := comp.fires(now, 1); len(f) > 0 {
		st.NextRun = &f[0]
	}
	if c.DB == nil {
		return st, nil
	}
	var lr LastRun
	var code sql.NullInt64
	var started, finished sql.NullString
	err = c.DB.R.QueryRowContext(ctx, `SELECT pc_id, exit_code, started_at, finished_at FROM execution_results
		WHERE job_id = ? ORDER BY recorded_at DESC, result_id DESC LIMIT 1`, comp.JobID).Scan(&lr.PCID, &code, &started, &finished)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("run stats: %w", err)
	default:
		if code.Valid {
			lr.ExitCode = &code.Int64
		}
		if started.Valid {
			lr.StartedAt = &started.String
		}
		if finished.Valid {
			lr.FinishedAt = &finished.String
		}
		st.LastRun = &lr
	}
	err = c.DB.R.QueryRowContext(ctx, `SELECT
			COALESCE(SUM(exit_code = 0 AND skipped = 0), 0),
			COALESCE(SUM(exit_code != 0 AND skipped = 0), 0),
			COALESCE(SUM(skipped = 1), 0)
		FROM execution_results WHERE job_id = ? AND finished_at IS NOT NULL AND recorded_at >= ?`,
		comp.JobID, store.FormatTime(now.Add(-24*time.Hour))).Scan(&st.Recent.OK, &st.Recent.Fail, &st.Recent.Skipped)
	if err != nil {
		return st, fmt.Errorf("run stats: %w", err)
	}
	return st, nil
}

// CoverageAgent is one roster PC's state for a schedule's job.
type CoverageAgent struct {
	PCID       string `json:"pc_id"`
	State      string `json:"state"`
	Version    string `json:"version,omitempty"`
	FinishedAt string `json:"finished_at,omitempty"`
}

// CoverageReply is upstream's coverage.
type CoverageReply struct {
	ID      string          `json:"id"`
	When    string          `json:"when"`
	JobID   string          `json:"job_id"`
	RunsOn  string          `json:"runs_on"`
	Total   int             `json:"total"`
	OK      int             `json:"ok"`
	Fail    int             `json:"fail"`
	Running int             `json:"running"`
	Pending int             `json:"pending"`
	Agents  []CoverageAgent `json:"agents,omitempty"`
	// NextOffset, when set, is where the next page of agents starts: a
	// reply carries at most coverageAgentsMax of them (it must fit one
	// NATS message).
	NextOffset *int `json:"next_offset,omitempty"`
}

type latestRun struct {
	exitCode   sql.NullInt64
	version    string
	finishedAt string
}

// jobCoverage reads, per PC, the job's running rows and latest finished row.
func jobCoverage(ctx context.Context, db *store.DB, job string) (map[string]bool, map[string]latestRun, error) {
	running := map[string]bool{}
	latest := map[string]latestRun{}
	if db == nil {
		return running, latest, nil
	}
	rows, err := db.R.QueryContext(ctx, `SELECT DISTINCT pc_id FROM execution_results WHERE job_id = ? AND finished_at IS NULL`, job)
	if err != nil {
		return nil, nil, fmt.Errorf("inflight: %w", err)
	}
	for rows.Next() {
		var pc string
		if err := rows.Scan(&pc); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("inflight: %w", err)
		}
		running[pc] = true
	}
	rows.Close()
	rows, err = db.R.QueryContext(ctx, `SELECT pc_id, exit_code, COALESCE(version, ''), finished_at FROM (
			SELECT pc_id, exit_code, version, finished_at,
				ROW_NUMBER() OVER (PARTITION BY pc_id ORDER BY finished_at DESC, result_id DESC) AS rn
			FROM execution_results WHERE job_id = ? AND finished_at IS NOT NULL) WHERE rn = 1`, job)
	if err != nil {
		return nil, nil, fmt.Errorf("finished: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var pc string
		var l latestRun
		if err := rows.Scan(&pc, &l.exitCode, &l.version, &l.finishedAt); err != nil {
			return nil, nil, fmt.Errorf("finished: %w", err)
		}
		latest[pc] = l
	}
	return running, latest, rows.Err()
}

// coverage computes a compiled schedule's coverage over its whole roster.
func (c *Catalog) coverage(ctx context.Context, comp *Compiled, withAgents bool) (CoverageReply, error) {
	rep := CoverageReply{ID: comp.ID, When: comp.Display(), JobID: comp.JobID, RunsOn: comp.RunsOn}
	if rep.RunsOn == "" {
		rep.RunsOn = "backend"
	}
	roster, err := c.Agents.FullRoster(ctx, comp.Target)
	if err != nil {
		return rep, err
	}
	running, latest, err := jobCoverage(ctx, c.DB, comp.JobID)
	if err != nil {
		return rep, fmt.Errorf("coverage: %w", err)
	}
	rep.Total = len(roster)
	for _, pc := range roster {
		a := CoverageAgent{PCID: pc, State: "pending"}
		if running[pc] {
			a.State = "running"
			rep.Running++
		} else if l, ok := latest[pc]; ok {
			a.Version, a.FinishedAt = l.version, l.finishedAt
			if l.exitCode.Valid && l.exitCode.Int64 == 0 {
				a.State = "ok"
				rep.OK++
			} else {
				a.State = "fail"
				rep.Fail++
			}
		} else {
			rep.Pending++
		}
		if withAgents {
			rep.Agents = append(rep.Agents, a)
		}
	}
	if withAgents && rep.Agents == nil {
		rep.Agents = []CoverageAgent{}
	}
	return rep, nil
}

// Coverage is GET /api/schedules/{id}/coverage.
// The counts cover the whole roster; agents is the page [offset,
// offset+limit) of it (limit default and at most coverageAgentsMax).
func (c *Catalog) Coverage(ctx context.Context, id string, offset, limit int) (CoverageReply, error) {
	if offset < 0 || limit < 0 {
		return CoverageReply{}, api.BadRequest("offset and limit must not be negative")
	}
	if limit == 0 || limit > coverageAgentsMax {
		limit = coverageAgentsMax
	}
	comp, err := c.compiled(ctx, id)
	if err != nil {
		return CoverageReply{}, err
	}
	rep, err := c.coverage(ctx, comp, true)
	if err != nil {
		return rep, err
	}
	all := rep.Agents
	rep.Agents = all[min(offset, len(all)):min(offset+limit, len(all))]
	if offset+limit < len(all) {
		next := offset + limit
		rep.NextOffset = &next
	}
	return rep, nil
}

// coverageAgentsMax bounds the agents of one coverage reply: about 100
// bytes each, 5,000 stay well under NATS's default 1 MiB max_payload.
const coverageAgentsMax = 5000

// CoverageRow is one schedule of the coverage summary.
type CoverageRow struct {
	ID      string `json:"id"`
	Total   int    `json:"total"`
	OK      int    `json:"ok"`
	Fail    int    `json:"fail"`
	Running int    `json:"running"`
	Pending int    `json:"pending"`
}

// CoverageSummary is GET /api/schedules/coverage: every usable schedule;
// one whose target does not resolve counts 0/0. Each distinct target is
// resolved once, and with the engine's completions cache each job's state
// comes from memory rather than a scan of its rows.
func (c *Catalog) CoverageSummary(ctx context.Context, now time.Time) ([]CoverageRow, error) {
	list, errs, err := c.listSchedules(ctx)
	if err != nil {
		return nil, err
	}
	rosters := map[string][]string{}
	caughtUp := false // the completions cache, once per call
	out := []CoverageRow{}
	for i, s := range list {
		if errs[i] != nil {
			continue
		}
		comp, err := s.Compile()
		if err != nil {
			continue
		}
		row := CoverageRow{ID: s.ID}
		if c.Completions == nil {
			if rep, err := c.coverage(ctx, comp, false); err == nil {
				row = CoverageRow{ID: s.ID, Total: rep.Total, OK: rep.OK, Fail: rep.Fail, Running: rep.Running, Pending: rep.Pending}
			}
			out = append(out, row)
			continue
		}
		key, _ := json.Marshal(comp.Target)
		roster, ok := rosters[string(key)]
		if !ok {
			if roster, err = c.Agents.FullRoster(ctx, comp.Target); err != nil {
				out = append(out, row)
				continue
			}
			rosters[string(key)] = roster
		}
		read := c.Completions.Cached
		if !caughtUp {
			read, caughtUp = c.Completions.Current, true
		}
		runs, err := read(ctx, comp.JobID, now)
		if err != nil {
			return nil, fmt.Errorf("finished: %w", err)
		}
		row.Total = len(roster)
		for _, pc := range roster {
			r := runs.Get(pc)
			switch {
			case r.running:
				row.Running++
			case r.lastDone.IsZero():
				row.Pending++
			case r.lastOK.Equal(r.lastDone):
				row.OK++
			default:
				row.Fail++
			}
		}
		out = append(out, row)
	}
	return out, nil
}
