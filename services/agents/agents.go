// Package agents is the fleet roster as operators browse it: the agents
// seen by heartbeat (the agents projection) with upstream's filters, sort
// and paging headers, one agent's detail, the version histogram, free-form
// metadata per PC (KV agent_meta), forgetting a PC, and two questions put
// to a live agent: ping (agents.{pc}.ping) and its own log
// (logs.fetch.{pc}).
//
// The logic is plain Go over a *store.DB and a Meta mirror; micro.go binds
// it to the NATS micro service "agents".
package agents

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
)

// AliveWithin is upstream's ALIVE_THRESHOLD.
const AliveWithin = 2 * time.Minute

// Row is upstream's AgentRow. Alive is beyond upstream (heartbeat within
// AliveWithin), kept for the dashboard, and so is Groups.
type Row struct {
	PCID                  string   `json:"pc_id"`
	Hostname              *string  `json:"hostname"`
	OSFamily              *string  `json:"os_family"`
	AgentVersion          *string  `json:"agent_version"`
	LastHeartbeat         *string  `json:"last_heartbeat"`
	UpdatedAt             *string  `json:"updated_at"`
	AgentCPUPct           *float64 `json:"agent_cpu_pct"`
	AgentRSSBytes         *int64   `json:"agent_rss_bytes"`
	AgentDiskReadBytes    *int64   `json:"agent_disk_read_bytes"`
	AgentDiskWrittenBytes *int64   `json:"agent_disk_written_bytes"`
	QuarantinedVersions   []string `json:"quarantined_versions,omitempty"`
	LastLogonUser         *string  `json:"last_logon_user"`
	LastLogonDisplayName  *string  `json:"last_logon_display_name"`
	// CommandKeys is omitted when the agent never reported any; [] is kept.
	CommandKeys *[]string `json:"command_keys,omitempty"`
	Enforcing   *bool     `json:"enforcing,omitempty"`
	Meta        []Entry   `json:"meta,omitempty"`
	Alive       bool      `json:"alive"`
	// Groups is beyond upstream too: the PC's effective groups (set by
	// hand and derived), as the agent listens on them; omitted when none.
	Groups []string `json:"groups,omitempty"`
}

const rowColumns = `pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at, agent_cpu_pct,
	agent_rss_bytes, agent_disk_read_bytes, agent_disk_written_bytes, quarantined_versions,
	last_logon_user, last_logon_display_name, command_keys, enforcing`

func scanRow(sc interface{ Scan(...any) error }, now time.Time) (Row, error) {
	var r Row
	var host, osf, ver, beat, upd, quar, user, disp, keys sql.NullString
	var cpu sql.NullFloat64
	var rss, rd, wr, enf sql.NullInt64
	if err := sc.Scan(&r.PCID, &host, &osf, &ver, &beat, &upd, &cpu, &rss, &rd, &wr, &quar, &user, &disp, &keys, &enf); err != nil {
		return r, err
	}
	str := func(s sql.NullString) *string {
		if !s.Valid {
			return nil
		}
		return &s.String
	}
	nonEmpty := func(s sql.NullString) *string {
		if !s.Valid || s.String == "" {
			return nil
		}
		return &s.String
	}
	num := func(n sql.NullInt64) *int64 {
		if !n.Valid {
			return nil
		}
		return &n.Int64
	}
	r.Hostname, r.OSFamily, r.AgentVersion = str(host), str(osf), str(ver)
	r.LastHeartbeat, r.UpdatedAt = store.APITime(beat), store.APITime(upd)
	if cpu.Valid {
		r.AgentCPUPct = &cpu.Float64
	}
	r.AgentRSSBytes, r.AgentDiskReadBytes, r.AgentDiskWrittenBytes = num(rss), num(rd), num(wr)
	if quar.Valid {
		// A malformed column reads as none.
		if json.Unmarshal([]byte(quar.String), &r.QuarantinedVersions) != nil {
			r.QuarantinedVersions = nil
		}
	}
	r.LastLogonUser, r.LastLogonDisplayName = nonEmpty(user), nonEmpty(disp)
	if keys.Valid {
		var k []string
		if json.Unmarshal([]byte(keys.String), &k) == nil {
			if k == nil {
				k = []string{}
			}
			r.CommandKeys = &k
		}
	}
	if enf.Valid {
		b := enf.Int64 != 0
		r.Enforcing = &b
	}
	if t, err := store.ParseTime(beat.String); err == nil && beat.Valid {
		r.Alive = now.Sub(t) <= AliveWithin
	}
	return r, nil
}

// ListParams is the agents list request; meta.<key>.<op> conditions are
// read from the raw parameters (see DecodeList).
type ListParams struct {
	Q           string `json:"q"`
	User        string `json:"user"`
	Version     string `json:"version"`
	Quarantined string `json:"quarantined"`
	Status      string `json:"status"`
	Limit       *int64 `json:"limit"`
	Offset      int64  `json:"offset"`
	// After is the cursor of a page (api.HeaderNext of the one before),
	// when Limit is absent: see Page.Paged.
	After string `json:"after"`
	// PageBytes is the reply budget of a page (api.Request.PageBudget):
	// a page reads no more rows than could fit it. 0: PageRows.
	PageBytes int    `json:"-"`
	MetaAny   string `json:"meta_any"`
	MetaKey   string `json:"meta_key"`
	MetaValue string `json:"meta_value"`
	Sort      string `json:"sort"`
	Dir       string `json:"dir"`

	Meta []MetaCond `json:"-"`
}

// MetaCond is one meta.<key>.<op>=<value> condition.
type MetaCond struct {
	Key, Op, Value string
}

// DecodeList reads the list parameters, metadata conditions included.
func DecodeList(r api.Request) (ListParams, error) {
	var p ListParams
	if err := api.Params(r, &p); err != nil {
		return p, err
	}
	var raw map[string]json.RawMessage
	if len(strings.TrimSpace(string(r.Data))) > 0 {
		json.Unmarshal(r.Data, &raw)
	}
	for k, v := range r.Header {
		if name, ok := cutPrefixFold(k, api.ParamHeaderPrefix); ok && len(v) > 0 {
			if raw == nil {
				raw = map[string]json.RawMessage{}
			}
			raw[name], _ = json.Marshal(v[0])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if !strings.HasPrefix(k, "meta.") {
			continue
		}
		var val string
		if json.Unmarshal(raw[k], &val) != nil {
			return p, api.BadRequest("parameter %s: must be a string", k)
		}
		c, err := parseMetaCond(k, val)
		if err != nil {
			return p, err
		}
		if c != nil {
			p.Meta = append(p.Meta, *c)
		}
	}
	// Legacy meta_key/meta_value fold into a condition.
	if p.MetaKey != "" {
		if p.MetaValue == "" {
			p.Meta = append(p.Meta, MetaCond{Key: p.MetaKey, Op: "set"})
		} else {
			p.Meta = append(p.Meta, MetaCond{Key: p.MetaKey, Op: "contains", Value: p.MetaValue})
		}
	}
	return p, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// parseMetaCond reads "meta.<key>.<op>" split on its last dot; nil when a
// value operator has a blank value (the condition is dropped).
func parseMetaCond(name, value string) (*MetaCond, error) {
	rest := strings.TrimPrefix(name, "meta.")
	i := strings.LastIndex(rest, ".")
	if i < 0 {
		return nil, api.BadRequest("malformed meta filter `%s` — expected meta.<key>.<op>", name)
	}
	key, op := rest[:i], rest[i+1:]
	if key == "" {
		return nil, api.BadRequest("meta filter `%s` has an empty key", name)
	}
	switch op {
	case "contains", "eq", "neq", "starts":
		if value == "" {
			return nil, nil
		}
	case "empty", "set", "absent":
	default:
		return nil, api.BadRequest("unknown meta filter operator `%s` in `%s`", op, name)
	}
	return &MetaCond{Key: key, Op: op, Value: value}, nil
}

// matches reports whether a PC's metadata satisfies c.
func (c MetaCond) matches(entries []Entry) bool {
	var val string
	found := false
	for _, e := range entries {
		if e.Key == c.Key {
			val, found = e.Value, true
			break
		}
	}
	switch c.Op {
	case "absent":
		return !found
	case "set":
		return found
	case "empty":
		return found && val == ""
	case "eq":
		return found && val == c.Value
	case "neq":
		return found && val != c.Value
	case "contains":
		return found && strings.Contains(val, c.Value)
	case "starts":
		return found && strings.HasPrefix(val, c.Value)
	}
	return false
}

// sortColumns maps upstream's sort names (and aliases) to columns.
var sortColumns = map[string]string{
	"pc_id": "pc_id", "hostname": "hostname", "os_family": "os_family", "os": "os_family",
	"agent_version": "agent_version", "agent": "agent_version", "last_heartbeat": "last_heartbeat",
	"last_logon_user": "last_logon_user", "last_logon": "last_logon_user", "updated_at": "updated_at",
}

// Page is a list answer: the rows and upstream's headers.
type Page struct {
	Rows    []Row
	Total   int64
	Online  int64
	Offline int64
	Counted bool // limit given: Online/Offline are sent
	// Paged: no limit was given, so Rows is one page of the whole list in
	// its order, More says rows follow, and Keys holds each row's cursor
	// (by pc_id), which asks for the rows after it. Without a limit the
	// whole fleet is upstream's answer; one NATS reply cannot carry it past
	// a few thousand agents, so it comes a page at a time (the gateway
	// joins the pages into one array).
	Paged bool
	More  bool
	Keys  map[string]string
}

// PageRows bounds the rows a page reads; the bytes that fit max_payload
// bound it further (see Page.Fit).
const PageRows = 5000

// minRowBytes is about the smallest a row encodes to (its keys alone
// take most of it): a page of b bytes cannot hold more than b/minRowBytes.
const minRowBytes = 300

// Reply is the page with its X-Total-Count, X-Online-Count and
// X-Offline-Count headers.
func (p Page) Reply() api.Reply {
	h := map[string]string{"X-Total-Count": strconv.FormatInt(p.Total, 10)}
	if p.Counted {
		h["X-Online-Count"] = strconv.FormatInt(p.Online, 10)
		h["X-Offline-Count"] = strconv.FormatInt(p.Offline, 10)
	}
	rows := p.Rows
	if rows == nil {
		rows = []Row{}
	}
	return api.Reply{Header: h, Body: rows}
}

// Fit is the reply of a page: as Reply when a limit was given, else the
// rows that fit budget bytes (api.FitPage) with the next page's cursor.
func (p Page) Fit(budget int) (api.Reply, error) {
	if !p.Paged {
		return p.Reply(), nil
	}
	rep := p.Reply()
	return api.FitPage(p.Rows, p.More, budget, func(r Row) string { return p.Keys[r.PCID] }, rep.Header)
}

// pageKey is where a row stands in the list's order: whether its sort
// value is missing (NULL, or a metadata key the PC lacks), the value,
// and the pc_id that breaks ties. Its cursor is the JSON of the three,
// base64url encoded: opaque to callers.
type pageKey struct {
	Missing bool
	Value   string
	PCID    string
}

func (k pageKey) cursor() string {
	b, _ := json.Marshal([]any{k.Missing, k.Value, k.PCID})
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseCursor(c string) (pageKey, error) {
	var k pageKey
	var t []json.RawMessage
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err == nil && len(t) == 3 {
		err = errors.Join(json.Unmarshal(t[0], &k.Missing), json.Unmarshal(t[1], &k.Value), json.Unmarshal(t[2], &k.PCID))
	} else if err == nil {
		err = errors.New("not three values")
	}
	if err != nil {
		return k, api.BadRequest("parameter after: not a cursor of this list (the %s header of the page before)", api.HeaderNext)
	}
	return k, nil
}

// compare orders two keys as the list does: present values first, then
// by value (dir), then pc_id ascending.
func (k pageKey) compare(o pageKey, desc bool) int {
	switch {
	case k.Missing != o.Missing:
		if o.Missing {
			return -1
		}
		return 1
	case k.Value != o.Value:
		if desc {
			return strings.Compare(o.Value, k.Value)
		}
		return strings.Compare(k.Value, o.Value)
	}
	return strings.Compare(k.PCID, o.PCID)
}

// List answers the agents list. Every filter runs in SQLite (the regexes
// through its REGEXP function, the metadata conditions as the set of
// matching pc_ids from the mirror, a meta:<key> sort as a JSON map of the
// sort values), so the counts and pages are exact at any fleet size.
func List(ctx context.Context, db *store.DB, meta *Meta, p ListParams, now time.Time) (Page, error) {
	var where []string
	var args []any
	for _, f := range []struct {
		pattern string
		cols    []string
	}{
		{p.Q, []string{"pc_id", "hostname"}},
		{p.User, []string{"last_logon_user", "last_logon_display_name"}},
		{p.Version, []string{"agent_version"}},
	} {
		if strings.TrimSpace(f.pattern) == "" {
			continue
		}
		if _, err := store.CompileRegexp(f.pattern); err != nil {
			return Page{}, api.BadRequest("invalid regex `%s`: %v", f.pattern, err)
		}
		var or []string
		for _, c := range f.cols {
			or = append(or, "COALESCE("+c+", '') REGEXP ?")
			args = append(args, f.pattern)
		}
		where = append(where, "("+strings.Join(or, " OR ")+")")
	}
	if p.Quarantined != "" {
		where = append(where, `quarantined_versions LIKE ? ESCAPE '\'`)
		args = append(args, `%"`+likeEscape(p.Quarantined)+`"%`)
	}
	if len(p.Meta) > 0 || p.MetaAny != "" {
		pcs, complement := meta.Matching(p.Meta, p.MetaAny)
		b, _ := json.Marshal(pcs)
		in := "IN"
		if complement {
			in = "NOT IN"
		}
		where = append(where, `pc_id `+in+` (SELECT value FROM json_each(?))`)
		args = append(args, string(b))
	}
	cutoff := store.FormatTime(now.Add(-AliveWithin))
	statusWhere := ""
	switch p.Status {
	case "":
	case "online":
		statusWhere = "last_heartbeat >= ?"
	case "offline":
		statusWhere = "last_heartbeat < ?"
	default:
		return Page{}, api.BadRequest("status must be 'online' or 'offline'")
	}

	metaSort := ""
	col := "updated_at" // upstream's default
	if p.Limit == nil && p.Sort == "" {
		// The whole list comes in pages, and every heartbeat moves an
		// agent's updated_at: in that order an agent that heartbeats
		// while the list streams would be listed twice or not at all.
		// By default the whole list is in pc_id order, which never moves.
		col = "pc_id"
	}
	switch {
	case strings.HasPrefix(p.Sort, "meta:"):
		metaSort = strings.TrimPrefix(p.Sort, "meta:")
		if metaSort == "" {
			return Page{}, api.BadRequest("sort=meta: requires a key (meta:<key>)")
		}
	case p.Sort != "":
		c, ok := sortColumns[p.Sort]
		if !ok {
			return Page{}, api.BadRequest("unknown sort field `%s`", p.Sort)
		}
		col = c
	}
	desc := col == "updated_at" && metaSort == ""
	switch p.Dir {
	case "":
	case "asc":
		desc = false
	case "desc":
		desc = true
	default:
		return Page{}, api.BadRequest("sort direction must be asc/desc, got `%s`", p.Dir)
	}
	if p.Offset < 0 || (p.Limit != nil && *p.Limit < 0) {
		return Page{}, api.BadRequest("limit and offset must not be negative")
	}
	paged := p.Limit == nil
	var after *pageKey
	if p.After != "" {
		if !paged {
			return Page{}, api.BadRequest("parameter after pages the list without a limit; with limit, page with offset")
		}
		k, err := parseCursor(p.After)
		if err != nil {
			return Page{}, err
		}
		after, p.Offset = &k, 0
	}
	limit := p.Limit
	rowsPerPage := PageRows
	if p.PageBytes > 0 {
		rowsPerPage = max(1, min(PageRows, p.PageBytes/minRowBytes))
	}
	if paged {
		n := int64(rowsPerPage + 1) // one more tells whether rows follow
		limit = &n
	}

	cond := func(withStatus bool) (string, []any) {
		w, a := slices.Clone(where), slices.Clone(args)
		if withStatus && statusWhere != "" {
			w = append(w, statusWhere)
			a = append(a, cutoff)
		}
		if len(w) == 0 {
			return "", a
		}
		return " WHERE " + strings.Join(w, " AND "), a
	}
	w, a := cond(true)
	dir := "ASC"
	if desc {
		dir = "DESC"
	}
	var out []Row
	var keys []pageKey
	var err error
	if metaSort == "" {
		if after != nil {
			// The rows after the cursor in (col IS NULL, col dir, pc_id).
			cmp := ">"
			if desc {
				cmp = "<"
			}
			kw := fmt.Sprintf(`(%[1]s IS NULL AND pc_id > ?)`, col)
			ka := []any{after.PCID}
			if !after.Missing {
				kw = fmt.Sprintf(`((%[1]s IS NOT NULL AND (%[1]s %[2]s ? OR (%[1]s = ? AND pc_id > ?))) OR %[1]s IS NULL)`, col, cmp)
				ka = []any{after.Value, after.Value, after.PCID}
			}
			if w == "" {
				w = " WHERE " + kw
			} else {
				w += " AND " + kw
			}
			a = append(a, ka...)
		}
		// The sort value comes with the row, as the cursor's key.
		q := `SELECT ` + rowColumns + `, ` + col + ` FROM agents` + w + fmt.Sprintf(` ORDER BY (%s IS NULL), %s %s, pc_id ASC`, col, col, dir)
		if limit != nil {
			q += ` LIMIT ? OFFSET ?`
			a = append(a, *limit, p.Offset)
		} else if p.Offset > 0 {
			q += ` LIMIT -1 OFFSET ?`
			a = append(a, p.Offset)
		}
		out, keys, err = queryKeyedRows(ctx, db, now, q, a...)
	} else {
		out, keys, err = metaSorted(ctx, db, meta, now, w, a, metaSort, desc, p.Offset, limit, after)
	}
	if err != nil {
		return Page{}, err
	}
	var more bool
	var pageKeys map[string]string
	if paged {
		if more = len(out) > rowsPerPage; more {
			out, keys = out[:rowsPerPage], keys[:rowsPerPage]
		}
		pageKeys = make(map[string]string, len(out))
		for i, k := range keys {
			pageKeys[out[i].PCID] = k.cursor()
		}
	}
	for i := range out {
		out[i].Meta = meta.Get(out[i].PCID)
	}

	page := Page{Rows: out, Total: p.Offset + int64(len(out)), Paged: paged, More: more, Keys: pageKeys}
	if paged && after == nil && more {
		// Upstream's total without a limit is offset + the rows answered:
		// all the matches past the offset, counted now since they come in
		// pages. Later pages (after set) leave it as their own.
		cw, ca := cond(true)
		var total int64
		if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM agents`+cw, ca...).Scan(&total); err != nil {
			return Page{}, queryError(ctx, "count agents failed", err)
		}
		page.Total = max(total, p.Offset)
	}
	if p.Limit != nil {
		page.Counted = true
		cw, ca := cond(false)
		ca = append([]any{cutoff}, ca...)
		var online, total int64
		err := db.R.QueryRowContext(ctx, `SELECT COALESCE(SUM(last_heartbeat >= ?), 0), COUNT(*) FROM agents`+cw, ca...).Scan(&online, &total)
		if err != nil {
			return Page{}, queryError(ctx, "count agents failed", err)
		}
		page.Online, page.Offline = online, total-online
		switch p.Status {
		case "online":
			page.Total = online
		case "offline":
			page.Total = total - online
		default:
			page.Total = total
		}
	}
	return page, nil
}

// queryKeyedRows runs a row query whose last column is the sort value,
// and gives each row's pageKey.
func queryKeyedRows(ctx context.Context, db *store.DB, now time.Time, q string, args ...any) ([]Row, []pageKey, error) {
	rows, err := db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, queryError(ctx, "list agents failed", err)
	}
	defer rows.Close()
	var out []Row
	var keys []pageKey
	for rows.Next() {
		var v sql.NullString
		r, err := scanRow(keyedScan{rows, &v}, now)
		if err != nil {
			return nil, nil, queryError(ctx, "list agents failed", err)
		}
		out = append(out, r)
		keys = append(keys, pageKey{Missing: !v.Valid, Value: v.String, PCID: r.PCID})
	}
	if err := rows.Err(); err != nil {
		return nil, nil, queryError(ctx, "list agents failed", err)
	}
	return out, keys, nil
}

// keyedScan scans a row's columns and then its sort value.
type keyedScan struct {
	rows *sql.Rows
	key  *sql.NullString
}

func (k keyedScan) Scan(dest ...any) error { return k.rows.Scan(append(dest, k.key)...) }

// queryRows runs a row query.
func queryRows(ctx context.Context, db *store.DB, now time.Time, q string, args ...any) ([]Row, error) {
	rows, err := db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, queryError(ctx, "list agents failed", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		r, err := scanRow(rows, now)
		if err != nil {
			return nil, queryError(ctx, "list agents failed", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, queryError(ctx, "list agents failed", err)
	}
	return out, nil
}

// metaSorted is a page ordered by a metadata value, case-insensitively,
// PCs without the key last either way, then by pc_id: the matching pc_ids
// come from SQL, are ordered here, and only the page's rows are read.
func metaSorted(ctx context.Context, db *store.DB, meta *Meta, now time.Time, where string, args []any, key string, desc bool, offset int64, limit *int64, after *pageKey) ([]Row, []pageKey, error) {
	rows, err := db.R.QueryContext(ctx, `SELECT pc_id FROM agents`+where, args...)
	if err != nil {
		return nil, nil, queryError(ctx, "list agents failed", err)
	}
	var ids []string
	for rows.Next() {
		var pc string
		if err := rows.Scan(&pc); err != nil {
			rows.Close()
			return nil, nil, queryError(ctx, "list agents failed", err)
		}
		ids = append(ids, pc)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, queryError(ctx, "list agents failed", err)
	}
	vals := meta.Values(key)
	keyOf := func(pc string) pageKey {
		v, ok := vals[pc]
		return pageKey{Missing: !ok, Value: v, PCID: pc}
	}
	slices.SortFunc(ids, func(x, y string) int { return keyOf(x).compare(keyOf(y), desc) })
	if after != nil {
		// The ids past the cursor: sorted, so the first one past it on.
		i, _ := slices.BinarySearchFunc(ids, *after, func(pc string, k pageKey) int {
			if keyOf(pc).compare(k, desc) <= 0 {
				return -1
			}
			return 1
		})
		ids = ids[i:]
	}
	lo := min(int(offset), len(ids))
	hi := len(ids)
	if limit != nil {
		hi = min(lo+int(*limit), len(ids))
	}
	window := ids[lo:hi]
	b, _ := json.Marshal(window)
	got, err := queryRows(ctx, db, now, `SELECT `+rowColumns+` FROM agents WHERE pc_id IN (SELECT value FROM json_each(?))`, string(b))
	if err != nil {
		return nil, nil, err
	}
	byPC := make(map[string]Row, len(got))
	for _, r := range got {
		byPC[r.PCID] = r
	}
	out := make([]Row, 0, len(window))
	keys := make([]pageKey, 0, len(window))
	for _, pc := range window {
		if r, ok := byPC[pc]; ok {
			out = append(out, r)
			keys = append(keys, keyOf(pc))
		}
	}
	return out, keys, nil
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

func queryError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return api.Unavailable("%s: the request deadline passed", what)
	}
	return api.Errorf(http.StatusInternalServerError, "%s", what)
}

// Detail is one agent's row without metadata; a 404 with an empty body
// when unknown.
func Detail(ctx context.Context, db *store.DB, pc string, now time.Time) (Row, error) {
	r, err := scanRow(db.R.QueryRowContext(ctx, `SELECT `+rowColumns+` FROM agents WHERE pc_id = ?`, pc), now)
	if err == sql.ErrNoRows {
		return Row{}, api.NotFound("")
	}
	if err != nil {
		return Row{}, queryError(ctx, "read agent failed", err)
	}
	return r, nil
}

// Version is one bucket of the version histogram.
type Version struct {
	Version *string `json:"version"`
	Total   int64   `json:"total"`
	Active  int64   `json:"active"`
}

// Versions counts agents per version (NULL and "" as null), online ones in
// active; by total descending, then version ascending with null first.
func Versions(ctx context.Context, db *store.DB, now time.Time) ([]Version, error) {
	rows, err := db.R.QueryContext(ctx, `SELECT NULLIF(agent_version, '') AS v, COUNT(*), COALESCE(SUM(last_heartbeat >= ?), 0)
		FROM agents GROUP BY v ORDER BY COUNT(*) DESC, (v IS NOT NULL), v`, store.FormatTime(now.Add(-AliveWithin)))
	if err != nil {
		return nil, queryError(ctx, "agent versions failed", err)
	}
	defer rows.Close()
	out := []Version{}
	for rows.Next() {
		var v Version
		var name sql.NullString
		if err := rows.Scan(&name, &v.Total, &v.Active); err != nil {
			return nil, queryError(ctx, "agent versions failed", err)
		}
		if name.Valid {
			v.Version = &name.String
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Forget deletes a PC's row; it reports whether there was one. A live
// agent comes back with its next heartbeat.
func Forget(ctx context.Context, db *store.DB, pc string) (bool, error) {
	var n int64
	err := db.WriteTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM agents WHERE pc_id = ?`, pc)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, api.Errorf(http.StatusInternalServerError, "delete agent %s: %v", pc, err)
	}
	return n > 0, nil
}
