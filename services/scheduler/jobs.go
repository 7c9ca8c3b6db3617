package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/results"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// Manifest is what the backend reads of a job manifest. The stored manifest
// keeps every other field as it was written.
type Manifest struct {
	ID          string  `json:"id"`
	Version     string  `json:"version"`
	Description string  `json:"description,omitempty"`
	Execute     Execute `json:"execute"`
	// Staleness is where upstream's manifest has it; execute.staleness is
	// read when it is absent.
	Staleness *wire.Staleness `json:"staleness,omitempty"`
}

// Execute is the manifest's execute block.
type Execute struct {
	Shell              string          `json:"shell"`
	Script             string          `json:"script"`
	Timeout            HumanDuration   `json:"timeout"`
	RunAs              string          `json:"run_as,omitempty"`
	Cwd                string          `json:"cwd,omitempty"`
	ScriptObject       string          `json:"script_object,omitempty"`
	ScriptObjectSHA256 string          `json:"script_object_sha256,omitempty"`
	Retry              *wire.Retry     `json:"retry,omitempty"`
	Staleness          *wire.Staleness `json:"staleness,omitempty"` // fallback for Manifest.Staleness
}

// ParseManifest decodes a manifest (JSON or YAML, see decodeDocument),
// validates it and returns it with the JSON to store: every field of the
// input, unknown ones included, but the list's derived live.
func ParseManifest(data []byte, contentType string) (Manifest, json.RawMessage, error) {
	doc, err := decodeDocument(data, contentType, "id", "version")
	if err != nil {
		return Manifest{}, nil, err
	}
	// The list's live counts are derived, not part of a manifest: one
	// edited from a list item must not carry them into the bucket. A list
	// item whose script was cut to fit the reply is refused whole.
	delete(doc, "live")
	if cut, _ := doc["script_truncated"].(bool); cut {
		return Manifest{}, nil, api.BadRequest("manifest has script_truncated: it is a jobs list preview whose script is cut; GET /api/jobs/{job_id} for the whole manifest")
	}
	delete(doc, "script_truncated")
	var m Manifest
	if err := bindDocument(doc, &m); err != nil {
		return m, nil, err
	}
	if err := m.validate(); err != nil {
		return m, nil, err
	}
	raw, err := api.Marshal(doc) // no HTML escaping: a script of "<" stays its size
	if err != nil {
		return m, nil, fmt.Errorf("encode manifest: %w", err)
	}
	return m, raw, nil
}

func (m Manifest) validate() error {
	switch {
	case m.ID == "":
		return api.BadRequest("id is required")
	case !validID(m.ID):
		return api.BadRequest("invalid id %q: use letters, digits, '-', '_' and '.'", m.ID)
	case m.Version == "":
		return api.BadRequest("version is required")
	case m.Execute.Shell == "":
		return api.BadRequest("execute.shell is required")
	case !wire.ValidShell(m.Execute.Shell):
		return api.BadRequest("invalid execute.shell %q: want powershell, pwsh, cmd or sh", m.Execute.Shell)
	case m.Execute.Script == "" && m.Execute.ScriptObject == "":
		return api.BadRequest("execute.script is required")
	case m.Execute.RunAs != "" && !wire.ValidRunAs(m.Execute.RunAs):
		return api.BadRequest("invalid execute.run_as %q: want system, user or system_gui", m.Execute.RunAs)
	case m.Execute.Timeout == "":
		return api.BadRequest("execute.timeout is required (e.g. 30s, 5m, 1h30m)")
	}
	d, err := m.Execute.Timeout.Duration()
	if err != nil {
		return api.BadRequest("invalid execute.timeout: %v", err)
	}
	if d <= 0 {
		return api.BadRequest("invalid execute.timeout %q: must be positive", m.Execute.Timeout)
	}
	return nil
}

// isNotFound reports whether err is the API's 404.
func isNotFound(err error) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// CommandStaleness is the staleness a Command carries: the manifest's
// top-level staleness, else execute.staleness, else cached.
func (m Manifest) CommandStaleness() wire.Staleness {
	for _, st := range []*wire.Staleness{m.Staleness, m.Execute.Staleness} {
		if st != nil && st.Mode != "" {
			return *st
		}
	}
	return wire.Staleness{Mode: "cached"}
}

// TimeoutSecs is the manifest timeout in whole seconds, rounded up.
func (m Manifest) TimeoutSecs() int64 {
	d, _ := m.Execute.Timeout.Duration()
	return ceilSeconds(d)
}

// Catalog is the jobs and schedules as stored in their KV buckets.
type Catalog struct {
	Jobs      jetstream.KeyValue
	Schedules jetstream.KeyValue
	// JS, when set, makes single-key reads go to the bucket's stream
	// leader so a request sees the writes of the one before it (kvread.go).
	JS jetstream.JetStream
	// DB, when set, is the store whose executions table gives each listed
	// job its live counts.
	DB *store.DB
	// MaxReply bounds the jobs list reply (default 1 MiB less a margin):
	// past it, long scripts are shown as previews.
	MaxReply int

	// The buckets beside the catalog (nil in tests that do not need them):
	// the freeze, the YAML mirrors, script_status for a disable's cascade.
	FleetConfig   jetstream.KeyValue
	SchedulesYAML jetstream.KeyValue
	JobsYAML      jetstream.KeyValue
	ScriptStatus  jetstream.KeyValue
	// Conn publishes kill.<exec_id> for a disable's cascade_kill.
	Conn *nats.Conn
	// Agents resolves targets for coverage.
	Agents *AgentCounter
	// Completions, when set, is the engine's cached view of the job
	// results, which the coverage summary reads instead of each job's
	// rows.
	Completions *Completions
}

// The buckets this package creates when missing.
const (
	BucketSchedulesYAML = "schedules_yaml"
	BucketJobsYAML      = "jobs_yaml"
	BucketScriptStatus  = wire.BucketScriptStatus
)

// Live is how many executions of a job are under way, from the executions
// table (upstream's dashboard reads j.live.running).
type Live struct {
	Running int `json:"running"`
	Pending int `json:"pending"`
}

// ListJobsLive is the jobs list the API answers: every stored manifest as
// stored, ordered by id, plus "live": its executions running and pending
// (zeros without a store).
func (c *Catalog) ListJobsLive(ctx context.Context) ([]json.RawMessage, error) {
	entries, err := listEntries(ctx, c.JS, c.Jobs)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	ids := make([]string, len(entries))
	list := make([]json.RawMessage, len(entries))
	for i, e := range entries {
		ids[i], list[i] = e.Key(), e.Value()
	}
	live, err := LiveCounts(ctx, c.DB, ids, time.Now())
	if err != nil {
		return nil, err
	}
	for i, raw := range list {
		withLive, err := withField(raw, "live", live[ids[i]])
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", ids[i], err)
		}
		list[i] = withLive
	}
	return c.fitJobs(list)
}

// ScriptPreview is how much of a script (characters) a jobs list shows
// when the whole list would not fit one reply.
const ScriptPreview = 200

// fitJobs keeps the list within MaxReply: when the manifests are too big
// together (a few scripts of hundreds of KB), every script longer than
// ScriptPreview is cut to it and its item says "script_truncated": true.
// GET /api/jobs/{job_id} has the whole manifest.
func (c *Catalog) fitJobs(list []json.RawMessage) ([]json.RawMessage, error) {
	budget := c.MaxReply
	if budget <= 0 {
		budget = 1<<20 - 1<<10
	}
	size := 2
	for _, raw := range list {
		size += len(raw) + 1
	}
	if size <= budget {
		return list, nil
	}
	for i, raw := range list {
		var item map[string]json.RawMessage
		var exec map[string]json.RawMessage
		var script string
		if json.Unmarshal(raw, &item) != nil || json.Unmarshal(item["execute"], &exec) != nil || json.Unmarshal(exec["script"], &script) != nil {
			continue
		}
		cut, ok := previewChars(script, ScriptPreview)
		if ok {
			continue
		}
		var err error
		if exec["script"], err = api.Marshal(cut); err == nil {
			if item["execute"], err = api.Marshal(exec); err == nil {
				item["script_truncated"] = json.RawMessage("true")
				list[i], err = api.Marshal(item)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("preview job: %w", err)
		}
	}
	return list, nil
}

// previewChars is s cut to n characters, and whether it was whole.
func previewChars(s string, n int) (string, bool) {
	for i := range s {
		if n == 0 {
			return s[:i], false
		}
		n--
	}
	return s, true
}

// LiveCounts counts the running and pending executions of each job in ids
// (a nil db: none). One query, on the (job_id, status) index.
func LiveCounts(ctx context.Context, db *store.DB, ids []string, now time.Time) (map[string]Live, error) {
	out := make(map[string]Live, len(ids))
	if db == nil || len(ids) == 0 {
		return out, nil
	}
	arg, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("encode job ids: %w", err)
	}
	// As the executions API shows them (services/results): an execution
	// whose targets all answered is completed, one past results.ExpiresAt
	// expired, even before the stored status says so.
	rows, err := db.R.QueryContext(ctx, `SELECT job_id, status, COUNT(*) FROM executions
		WHERE job_id IN (SELECT value FROM json_each(?)) AND status IN ('running', 'pending')
			AND NOT (target_count > 0 AND success_count + failure_count + skipped_count >= target_count)
			AND `+results.ExpiresAt+` >= ?
		GROUP BY job_id, status`, string(arg), store.FormatTime(now))
	if err != nil {
		return nil, fmt.Errorf("count live executions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, status string
		var n int
		if err := rows.Scan(&id, &status, &n); err != nil {
			return nil, fmt.Errorf("count live executions: %w", err)
		}
		l := out[id]
		if status == "running" {
			l.Running = n
		} else {
			l.Pending = n
		}
		out[id] = l
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count live executions: %w", err)
	}
	return out, nil
}

// GetJob returns one job's manifest and its stored JSON; 404 if unknown.
func (c *Catalog) GetJob(ctx context.Context, id string) (Manifest, json.RawMessage, error) {
	if !validID(id) {
		return Manifest{}, nil, api.NotFound("job %q not found", id)
	}
	e, err := c.kvGet(ctx, c.Jobs, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Manifest{}, nil, api.NotFound("job %q not found", id)
	}
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("get job %s: %w", id, err)
	}
	var m Manifest
	if err := json.Unmarshal(e.value, &m); err != nil {
		return m, nil, fmt.Errorf("stored job %s is not a manifest: %w", id, err)
	}
	return m, json.RawMessage(e.value), nil
}

// PutJob validates and stores a manifest, replacing any with its id.
func (c *Catalog) PutJob(ctx context.Context, data []byte, contentType string) (json.RawMessage, error) {
	m, raw, err := ParseManifest(data, contentType)
	if err != nil {
		return nil, err
	}
	if _, err := c.Jobs.Put(ctx, m.ID, raw); err != nil {
		return nil, fmt.Errorf("put job %s: %w", m.ID, err)
	}
	c.putMirror(ctx, c.JobsYAML, m.ID, data, contentType, raw)
	return raw, nil
}

// DeleteJob removes a job; 409 while a schedule names it. Deleting a job
// that is not there succeeds, as upstream's does.
func (c *Catalog) DeleteJob(ctx context.Context, id string) error {
	if _, _, err := c.GetJob(ctx, id); err != nil {
		if isNotFound(err) {
			return nil // nor a delete marker for a key that never was
		}
		return err
	}
	scheds, err := c.ListSchedules(ctx)
	if err != nil {
		return err
	}
	var users []string
	for _, s := range scheds {
		if s.JobID == id {
			users = append(users, s.ID)
		}
	}
	if len(users) > 0 {
		return api.Conflict("job %q is used by schedules %s: delete or repoint them first", id, strings.Join(users, ", "))
	}
	if err := c.Jobs.Delete(ctx, id); err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	return nil
}

// listEntries reads every live entry of a bucket through one watcher
// rather than a request per key; ordered by key.
//
// The watcher's consumer may sit on any replica of a replicated bucket,
// one that lags behind the write a client's previous request just made
// through another node. So, given js, it first asks the stream leader for
// the revision of the bucket's newest message and reads on past the
// watcher's end-of-snapshot marker until it has seen it (the newest
// message is the newest of its key, so it is among the entries, deletes
// included). Without js (one server) the snapshot is current.
func listEntries(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) ([]jetstream.KeyValueEntry, error) {
	var want uint64
	if js != nil {
		var err error
		if want, err = leaderLastRevision(ctx, js, kv.Bucket()); err != nil {
			return nil, err
		}
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	latest := map[string]jetstream.KeyValueEntry{}
	var seen uint64
	var caughtUp <-chan time.Time // armed at the snapshot's end
	done := func() []jetstream.KeyValueEntry {
		out := make([]jetstream.KeyValueEntry, 0, len(latest))
		for _, e := range latest {
			if e.Operation() == jetstream.KeyValuePut {
				out = append(out, e)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
		return out
	}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("watcher closed")
			}
			if e != nil {
				latest[e.Key()] = e
				seen = max(seen, e.Revision())
			} else if caughtUp == nil {
				// A replica that does not catch up within this bound is
				// broken rather than slow; answer with what it has.
				caughtUp = time.After(3 * time.Second)
			}
			if caughtUp != nil && seen >= want {
				return done(), nil
			}
		case <-caughtUp:
			return done(), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
