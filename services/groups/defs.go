package groups

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// GroupDef is a declared group: static (members) or dynamic (query, a
// read-only SQL statement over the projection returning a pc_id column).
// Empty lists and unset values are omitted, as upstream stores them.
type GroupDef struct {
	ID          string   `json:"id" yaml:"id"`
	Description string   `json:"description,omitempty" yaml:"description,omitempty"`
	Members     []string `json:"members,omitempty" yaml:"members,omitempty"`
	Query       string   `json:"query,omitempty" yaml:"query,omitempty"`
	Refresh     string   `json:"refresh,omitempty" yaml:"refresh,omitempty"`
	Tags        []string `json:"tags,omitempty" yaml:"tags,omitempty"`
	Origin      *Origin  `json:"origin,omitempty" yaml:"origin,omitempty"`
}

// Origin says where a definition came from (a file in a repository).
type Origin struct {
	Path       string  `json:"path" yaml:"path"`
	Repo       *string `json:"repo,omitempty" yaml:"repo,omitempty"`
	ScriptFile *string `json:"script_file,omitempty" yaml:"script_file,omitempty"`
}

// DefaultRefresh is how long a dynamic group's resolution is reused.
const DefaultRefresh = 10 * time.Minute

// MaxQueryRows caps a dynamic group's query.
const MaxQueryRows = 100_000

// queryTimeout bounds one dynamic group's query.
const queryTimeout = 5 * time.Second

var defIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Kind is "static" or "dynamic".
func (d GroupDef) Kind() string {
	if strings.TrimSpace(d.Query) != "" {
		return "dynamic"
	}
	return "static"
}

// Validate checks the definition as upstream's validate() does.
func (d GroupDef) Validate() error {
	if !defIDRe.MatchString(d.ID) {
		return fmt.Errorf("id %q must match [A-Za-z0-9._-]+", d.ID)
	}
	hasQuery := strings.TrimSpace(d.Query) != ""
	if hasQuery == (len(d.Members) > 0) {
		return errors.New("exactly one of `members` (non-empty) or `query` must be set")
	}
	if slices.ContainsFunc(d.Members, func(s string) bool { return strings.TrimSpace(s) == "" }) {
		return errors.New("members must not contain blank entries")
	}
	if slices.ContainsFunc(d.Tags, func(s string) bool { return strings.TrimSpace(s) == "" }) {
		return errors.New("tags must not contain blank entries")
	}
	if d.Refresh != "" {
		if _, err := parseHuman(d.Refresh); err != nil {
			return fmt.Errorf("refresh %q: %v", d.Refresh, err)
		}
	}
	return nil
}

func (d GroupDef) refresh() time.Duration {
	if r, err := parseHuman(d.Refresh); err == nil && r > 0 {
		return r
	}
	return DefaultRefresh
}

// parseHuman reads a humantime duration: "10m", "1h 30m", "90s".
func parseHuman(s string) (time.Duration, error) {
	s = strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	if s == "" {
		return 0, errors.New("empty duration")
	}
	s = strings.ReplaceAll(s, "min", "m")
	s = strings.ReplaceAll(s, "sec", "s")
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("not a duration (use 30s, 10m, 1h)")
	}
	return d, nil
}

// DecodeDef reads a definition body: YAML by Content-Type, else JSON, both
// strict (unknown keys are refused), as upstream's YamlOrJson.
func DecodeDef(body []byte, contentType string) (GroupDef, bool, error) {
	var d GroupDef
	ct := strings.ToLower(strings.TrimSpace(strings.Split(contentType, ";")[0]))
	switch ct {
	case "application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml":
		if !utf8.Valid(body) {
			return d, true, api.BadRequest("YAML body must be UTF-8: invalid byte sequence")
		}
		dec := yaml.NewDecoder(bytes.NewReader(body))
		dec.KnownFields(true)
		if err := dec.Decode(&d); err != nil {
			return d, true, api.BadRequest("parse YAML body: %v", err)
		}
		return d, true, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return d, false, api.BadRequest("parse JSON body: %v", err)
	}
	return d, false, nil
}

// Defs is the group definitions catalog (KV group_defs, created on first
// write) and the resolver of their members.
type Defs struct {
	JS  jetstream.JetStream
	DB  *store.DB // the projection dynamic queries read; nil: they fail
	Now func() time.Time
	// Replicas of the lazily created buckets.
	Replicas int

	mu      sync.Mutex
	cache   map[string]resolved
	changed chan struct{} // poked on each edit made here (the materializer)
}

// poke tells the materializer a definition changed.
func (s *Defs) poke() {
	s.mu.Lock()
	ch := s.changed
	s.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

type resolved struct {
	hash    [32]byte
	at      time.Time
	members []string
	err     error
}

// DefSummary answers a POST.
type DefSummary struct {
	ID          string   `json:"id"`
	Description *string  `json:"description"`
	Kind        string   `json:"kind"`
	MemberCount *int     `json:"member_count"`
	Tags        []string `json:"tags"`
}

// DefMembers answers GET /api/group-defs/{id}/members.
type DefMembers struct {
	ID      string   `json:"id"`
	Kind    string   `json:"kind"`
	Count   int      `json:"count"`
	Members []string `json:"members"`
}

func (s *Defs) bucket(ctx context.Context, name string, create bool) (jetstream.KeyValue, error) {
	kv, err := s.JS.KeyValue(ctx, name)
	if err == nil || !create || !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = s.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: name, History: 5, Storage: jetstream.FileStorage, Replicas: max(1, s.Replicas),
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return s.JS.KeyValue(ctx, name)
	}
	return kv, err
}

// List is every definition, by id; entries that do not decode are skipped.
func (s *Defs) List(ctx context.Context) ([]GroupDef, error) {
	out := []GroupDef{}
	kv, err := s.bucket(ctx, wire.BucketGroupDefs, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, k := range keys(ctx, kv) {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var d GroupDef
		if json.Unmarshal(e.Value(), &d) == nil {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b GroupDef) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Put validates and stores a definition, and mirrors its YAML.
func (s *Defs) Put(ctx context.Context, body []byte, contentType string) (DefSummary, error) {
	d, isYAML, err := DecodeDef(body, contentType)
	if err != nil {
		return DefSummary{}, err
	}
	if err := d.Validate(); err != nil {
		return DefSummary{}, api.BadRequest("invalid group: %v", err)
	}
	if d.Kind() == "dynamic" {
		if err := s.checkQuery(ctx, d.Query); err != nil {
			return DefSummary{}, api.BadRequest("invalid group: query is not a read-only query: %v", err)
		}
	}
	kv, err := s.bucket(ctx, wire.BucketGroupDefs, true)
	if err != nil {
		return DefSummary{}, api.Unavailable("group_defs KV bucket unavailable: %v", err)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(d)
	if _, err := kv.Put(ctx, d.ID, bytes.TrimSpace(b.Bytes())); err != nil {
		return DefSummary{}, fmt.Errorf("write group_defs %s: %w", d.ID, err)
	}
	s.forget(d.ID)
	s.poke()
	// The YAML mirror is best effort, as upstream's.
	text := body
	if !isYAML {
		text, _ = yaml.Marshal(d)
	}
	if ykv, err := s.bucket(ctx, wire.BucketGroupDefsYAML, true); err == nil {
		ykv.Put(ctx, d.ID, text)
	}
	sum := DefSummary{ID: d.ID, Kind: d.Kind(), Tags: d.Tags}
	if d.Description != "" {
		sum.Description = &d.Description
	}
	if sum.Kind == "static" {
		n := len(d.Members)
		sum.MemberCount = &n
	}
	if sum.Tags == nil {
		sum.Tags = []string{}
	}
	return sum, nil
}

func validDefID(id string) error {
	if !defIDRe.MatchString(id) {
		return api.BadRequest("invalid group id '%s' (allowed: [A-Za-z0-9._-])", id)
	}
	return nil
}

// get reads one definition; 404 when unknown.
func (s *Defs) get(ctx context.Context, id string) (GroupDef, error) {
	if err := validDefID(id); err != nil {
		return GroupDef{}, err
	}
	kv, err := s.bucket(ctx, wire.BucketGroupDefs, false)
	if err != nil {
		return GroupDef{}, api.NotFound("group '%s' not found", id)
	}
	e, err := kv.Get(ctx, id)
	if err != nil {
		return GroupDef{}, api.NotFound("group '%s' not found", id)
	}
	var d GroupDef
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		return GroupDef{}, fmt.Errorf("decode group_defs %s: %w", id, err)
	}
	return d, nil
}

// YAML is a definition's YAML: the mirrored text, else a dump of the JSON.
func (s *Defs) YAML(ctx context.Context, id string) (api.Reply, error) {
	d, err := s.get(ctx, id)
	if err != nil {
		return api.Reply{}, err
	}
	text, _ := yaml.Marshal(d)
	if ykv, err := s.bucket(ctx, wire.BucketGroupDefsYAML, false); err == nil {
		if e, err := ykv.Get(ctx, id); err == nil && utf8.Valid(e.Value()) {
			text = e.Value()
		}
	}
	return api.Reply{Header: map[string]string{"Content-Type": "application/yaml"}, Body: text}, nil
}

// Delete removes a definition: 404 for a missing bucket or key (checked
// first, so a typo leaves no tombstone).
func (s *Defs) Delete(ctx context.Context, id string) error {
	if err := validDefID(id); err != nil {
		return err
	}
	kv, err := s.bucket(ctx, wire.BucketGroupDefs, false)
	if err != nil {
		return api.NotFound("group_defs bucket missing")
	}
	if _, err := kv.Get(ctx, id); err != nil {
		return api.NotFound("group '%s' not found", id)
	}
	if err := kv.Delete(ctx, id); err != nil {
		return fmt.Errorf("delete group_defs %s: %w", id, err)
	}
	if ykv, err := s.bucket(ctx, wire.BucketGroupDefsYAML, false); err == nil {
		ykv.Delete(ctx, id)
	}
	s.forget(id)
	s.poke()
	return nil
}

// Members resolves one definition.
func (s *Defs) Members(ctx context.Context, id string) (DefMembers, error) {
	d, err := s.get(ctx, id)
	if err != nil {
		return DefMembers{}, err
	}
	m, err := s.Resolve(ctx, d)
	if err != nil {
		return DefMembers{}, api.BadRequest("resolve group '%s': %v", id, err)
	}
	return DefMembers{ID: d.ID, Kind: d.Kind(), Count: len(m), Members: m}, nil
}

func (s *Defs) forget(id string) {
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
}

// Resolve is a definition's members, sorted and deduplicated: the literal
// list, or the query's pc_id column. A dynamic result (or its error) is
// reused for the definition's refresh interval.
func (s *Defs) Resolve(ctx context.Context, d GroupDef) ([]string, error) {
	if d.Kind() == "static" {
		return Normalize(d.Members), nil
	}
	b, _ := json.Marshal(d)
	h := sha256.Sum256(b)
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[d.ID]
	s.mu.Unlock()
	if ok && c.hash == h && now.Sub(c.at) < d.refresh() {
		return c.members, c.err
	}
	m, err := s.runQuery(ctx, d.Query)
	s.mu.Lock()
	if s.cache == nil {
		s.cache = map[string]resolved{}
	}
	s.cache[d.ID] = resolved{hash: h, at: now, members: m, err: err}
	s.mu.Unlock()
	return m, err
}

func (s *Defs) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// readOnlyStatement checks the query's shape: one SELECT, WITH or VALUES
// statement. The read pool (query_only) refuses any write besides.
func readOnlyStatement(q string) error {
	q = strings.TrimSpace(q)
	q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
	if strings.Contains(q, ";") {
		return errors.New("one statement only")
	}
	first := strings.ToUpper(strings.Fields(q + " x")[0])
	if first != "SELECT" && first != "WITH" && first != "VALUES" {
		return fmt.Errorf("must start with SELECT or WITH, not %s", first)
	}
	return nil
}

// checkQuery refuses a query that is not one read-only statement or does
// not compile against the projection.
func (s *Defs) checkQuery(ctx context.Context, q string) error {
	if err := readOnlyStatement(q); err != nil {
		return err
	}
	if s.DB == nil {
		return errors.New("no projection on this node")
	}
	rows, err := s.DB.R.QueryContext(ctx, "EXPLAIN "+strings.TrimSuffix(strings.TrimSpace(q), ";"))
	if err != nil {
		return err
	}
	defer rows.Close()
	// The compiled program says what the statement does: a WITH … DELETE
	// passes the shape check but opens a table for writing.
	cols, _ := rows.Columns()
	at := slices.Index(cols, "opcode")
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() && at >= 0 {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		switch op := fmt.Sprint(text(vals[at])); op {
		case "OpenWrite", "Insert", "Delete", "IdxInsert", "IdxDelete", "VUpdate", "Clear", "Destroy", "CreateBtree", "DropTable", "ParseSchema":
			return fmt.Errorf("the statement writes (%s)", op)
		}
	}
	return rows.Err()
}

func text(v any) any {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return v
}

// runQuery runs a dynamic group's query on the read-only pool, bounded in
// time and rows, and collects its pc_id column (found by name, any case;
// NULLs dropped, other values as text).
func (s *Defs) runQuery(ctx context.Context, q string) ([]string, error) {
	if err := readOnlyStatement(q); err != nil {
		return nil, err
	}
	if s.DB == nil {
		return nil, errors.New("no projection on this node")
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, err := s.DB.R.QueryContext(ctx, strings.TrimSuffix(strings.TrimSpace(q), ";"))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	at := slices.IndexFunc(cols, func(c string) bool { return strings.EqualFold(c, "pc_id") })
	if at < 0 {
		return nil, errors.New("the query returns no pc_id column")
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var out []string
	for n := 0; rows.Next() && n < MaxQueryRows; n++ {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		switch v := vals[at].(type) {
		case nil:
		case []byte:
			out = append(out, string(v))
		case string:
			out = append(out, v)
		default:
			out = append(out, fmt.Sprint(v))
		}
	}
	if err := rows.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	return Normalize(out), nil
}

// Materializer keeps agent_groups_derived equal to what the definitions
// resolve to: at start, every Interval, and at once when a definition
// changes. It is the bucket's only writer; a definition whose resolution
// failed keeps the members it had.
type Materializer struct {
	Defs     *Defs
	Derived  jetstream.KeyValue
	Interval time.Duration // default 60 s
	Log      interface {
		Warn(msg string, args ...any)
	}

	last map[string][]string // def id -> members of the last good pass
}

// Run reconciles until ctx ends.
func (m *Materializer) Run(ctx context.Context) {
	if m.Interval <= 0 {
		m.Interval = time.Minute
	}
	changed := make(chan struct{}, 1)
	m.Defs.mu.Lock()
	m.Defs.changed = changed
	m.Defs.mu.Unlock()
	go m.watchDefs(ctx, changed)
	t := time.NewTicker(m.Interval)
	defer t.Stop()
	for {
		if err := m.Pass(ctx); err != nil && ctx.Err() == nil {
			m.Log.Warn("group materializer pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		}
	}
}

// watchDefs signals changed on every edit of group_defs (waiting for the
// bucket to exist, since it is created on first write).
func (m *Materializer) watchDefs(ctx context.Context, changed chan<- struct{}) {
	for ctx.Err() == nil {
		kv, err := m.Defs.bucket(ctx, wire.BucketGroupDefs, false)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
		if err != nil {
			continue
		}
		// Edits made before the watch began (another node's) count too.
		select {
		case changed <- struct{}{}:
		default:
		}
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}
		w.Stop()
	}
}

// Pass resolves every definition once and writes the per-PC sets that
// changed: a put of {"groups":[…]}, or a delete when the set became empty.
func (m *Materializer) Pass(ctx context.Context) error {
	defs, err := m.Defs.List(ctx)
	if err != nil {
		return err
	}
	if m.last == nil {
		m.last = map[string][]string{}
	}
	byPC := map[string][]string{}
	seen := map[string]bool{}
	for _, d := range defs {
		seen[d.ID] = true
		members, err := m.Defs.Resolve(ctx, d)
		if err != nil {
			m.Log.Warn("resolve group; keeping its members", "group", d.ID, "err", err)
			members = m.last[d.ID]
		} else {
			m.last[d.ID] = members
		}
		for _, pc := range members {
			if wire.ValidToken(pc) {
				byPC[pc] = append(byPC[pc], d.ID)
			}
		}
	}
	for id := range m.last {
		if !seen[id] {
			delete(m.last, id)
		}
	}
	stored := map[string]bool{}
	for _, k := range keys(ctx, m.Derived) {
		stored[k] = true
	}
	var errs []error
	for pc := range stored {
		if _, ok := byPC[pc]; !ok {
			if err := m.Derived.Delete(ctx, pc); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for pc, gs := range byPC {
		want := Encode(gs)
		if stored[pc] {
			if e, err := m.Derived.Get(ctx, pc); err == nil && bytes.Equal(e.Value(), want) {
				continue
			}
		}
		if _, err := m.Derived.Put(ctx, pc, want); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// internal is a 500 whose text reaches the caller, as upstream's do.
func internal(format string, args ...any) error {
	return api.Errorf(http.StatusInternalServerError, format, args...)
}
