package scheduler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The complete examples of upstream's schedules spec (§1.4), as upstream
// stores them.
var specExamples = []string{
	`{"id":"kitting-once","when":{"per_pc":"once"},"job_id":"kitting-setup","target":{"groups":[],"pcs":[],"all":true},"tz":"local","runs_on":"backend","enabled":true}`,
	`{"id":"inventory-hw","when":{"per_pc":{"every":"6h"}},"job_id":"inventory-hw","target":{"groups":[],"pcs":[],"all":true},"jitter":"5m","constraints":{"window":"22:00-05:00","max_concurrent":50,"skip_dates":["2026-01-01","2026-12-25"]},"on_failure":{"retry":{"max":3,"backoff":"10m"}},"tz":"local","runs_on":"backend","enabled":true,"tags":["inventory","nightly"]}`,
	`{"id":"morning-greeting","when":{"calendar":{"at":"09:00","days":["mon-fri"]}},"job_id":"show-toast","target":{"groups":[],"pcs":[],"all":true},"tz":"local","starting_deadline":"30m","runs_on":"backend","enabled":true}`,
	`{"id":"patch-2026-06","when":{"calendar":{"at":"2026-06-10 09:00"}},"job_id":"install-patch","target":{"groups":["canary","wave1"],"pcs":[],"all":false},"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"},{"group":"wave1","delay":"30m"}]},"active":{"until":"2026-07-01"},"tz":"utc","runs_on":"backend","enabled":true}`,
	`{"id":"patch-tuesday","when":{"calendar":{"at":"03:00","days":["tue#2"]}},"job_id":"win-update","target":{"groups":["tokyo-office"],"pcs":[],"all":false},"constraints":{"require":{"ac_power":true,"idle":"10m"}},"tz":"local","runs_on":"agent","enabled":false}`,
	`{"id":"boot-inventory","when":{"on":["startup","logon","unlock"]},"job_id":"boot-inventory","target":{"groups":[],"pcs":["PC1234"],"all":false},"tz":"local","starting_deadline":"15m","runs_on":"agent","enabled":true}`,
}

// upstreamDecode is a strict reader modelled on upstream's serde model of
// Schedule as agents and backends read it: unknown keys are ignored (#492)
// but a missing required field, a bad enum string, a wrong JSON type or a
// null where upstream has a plain (defaulted) field fails.
func upstreamDecode(b []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return fmt.Errorf("not an object: %v", err)
	}
	for _, k := range []string{"id", "when", "job_id"} {
		if _, ok := top[k]; !ok {
			return fmt.Errorf("missing field `%s`", k)
		}
	}
	for _, k := range []string{"id", "job_id", "when", "target", "tz", "runs_on", "enabled", "tags"} {
		if v, ok := top[k]; ok && string(v) == "null" {
			return fmt.Errorf("%s: invalid type: null", k)
		}
	}
	type uRetry struct {
		Max     *uint32 `json:"max"`
		Backoff *string `json:"backoff"`
	}
	var u struct {
		ID     string `json:"id"`
		JobID  string `json:"job_id"`
		Target *struct {
			Groups []string `json:"groups"`
			PCs    []string `json:"pcs"`
			All    bool     `json:"all"`
		} `json:"target"`
		Rollout *struct {
			Strategy *string `json:"strategy"`
			Waves    *[]struct {
				Group *string `json:"group"`
				Delay *string `json:"delay"`
			} `json:"waves"`
		} `json:"rollout"`
		Jitter     *string `json:"jitter"`
		DeadlineAt *string `json:"deadline_at"`
		Active     *struct {
			From  *string `json:"from"`
			Until *string `json:"until"`
		} `json:"active"`
		Constraints *struct {
			Window        *string  `json:"window"`
			MaxConcurrent *uint32  `json:"max_concurrent"`
			SkipDates     []string `json:"skip_dates"`
			Require       *struct {
				ACPower  *bool    `json:"ac_power"`
				Idle     *string  `json:"idle"`
				CPUBelow *float64 `json:"cpu_below"`
				Network  *bool    `json:"network"`
			} `json:"require"`
		} `json:"constraints"`
		OnFailure *struct {
			Retry *uRetry `json:"retry"`
		} `json:"on_failure"`
		TZ               *string  `json:"tz"`
		StartingDeadline *string  `json:"starting_deadline"`
		RunsOn           *string  `json:"runs_on"`
		Enabled          *bool    `json:"enabled"`
		Tags             []string `json:"tags"`
		Origin           *struct {
			Path string `json:"path"`
		} `json:"origin"`
	}
	if err := json.Unmarshal(b, &u); err != nil {
		return err
	}
	if u.TZ != nil && *u.TZ != "local" && *u.TZ != "utc" {
		return fmt.Errorf("tz: unknown variant `%s`, expected `local` or `utc`", *u.TZ)
	}
	if u.RunsOn != nil && *u.RunsOn != "backend" && *u.RunsOn != "agent" {
		return fmt.Errorf("runs_on: unknown variant `%s`", *u.RunsOn)
	}
	if r := u.Rollout; r != nil {
		if r.Waves == nil {
			return fmt.Errorf("rollout: missing field `waves`")
		}
		if r.Strategy != nil && *r.Strategy != "wave" {
			return fmt.Errorf("rollout.strategy: unknown variant")
		}
		for _, w := range *r.Waves {
			if w.Group == nil || w.Delay == nil {
				return fmt.Errorf("rollout.waves: missing field")
			}
		}
	}
	if u.OnFailure != nil && u.OnFailure.Retry != nil && (u.OnFailure.Retry.Max == nil || u.OnFailure.Retry.Backoff == nil) {
		return fmt.Errorf("on_failure.retry: missing field")
	}
	var when map[string]json.RawMessage
	if err := json.Unmarshal(top["when"], &when); err != nil || len(when) != 1 {
		return fmt.Errorf("when: want a map with one key: %s", top["when"])
	}
	for k, v := range when {
		switch k {
		case "per_pc", "per_target":
			var s string
			if json.Unmarshal(v, &s) == nil {
				if s != "once" && s != "once_per_version" {
					return fmt.Errorf("when.%s: no variant %q", k, s)
				}
				continue
			}
			var e struct {
				Every *string `json:"every"`
			}
			if err := json.Unmarshal(v, &e); err != nil || e.Every == nil {
				return fmt.Errorf("when.%s: did not match PerPolicy: %s", k, v)
			}
		case "calendar":
			var c struct {
				At   *string  `json:"at"`
				Days []string `json:"days"`
			}
			if err := json.Unmarshal(v, &c); err != nil || c.At == nil {
				return fmt.Errorf("when.calendar: %s", v)
			}
		case "on":
			var on []string
			if err := json.Unmarshal(v, &on); err != nil {
				return fmt.Errorf("when.on: %v", err)
			}
			for _, t := range on {
				if !contains(onTriggers, t) {
					return fmt.Errorf("when.on: unknown variant %q", t)
				}
			}
		default:
			return fmt.Errorf("when: unknown variant `%s`", k)
		}
	}
	return nil
}

// Every example of the spec reads, and is stored byte for byte as upstream
// stores it: its key order and its always-written keys.
func TestWhenSpecExamplesRoundTrip(t *testing.T) {
	for _, ex := range specExamples {
		c, raw, err := ParseSchedule([]byte(ex), "application/json")
		if err != nil {
			t.Errorf("%s: %v", ex, err)
			continue
		}
		if string(raw) != ex {
			t.Errorf("stored\n %s\nwant\n %s", raw, ex)
		}
		if err := upstreamDecode(raw); err != nil {
			t.Errorf("%s: upstream cannot read it: %v", raw, err)
		}
		// Decoded again as stored: the same bytes.
		s, err := decodeStored(raw)
		if err != nil {
			t.Fatal(err)
		}
		again, err := s.encodeUpstream()
		if err != nil || string(again) != ex {
			t.Errorf("re-encoded %s (%v)", again, err)
		}
		if c.ID == "patch-tuesday" || c.ID == "boot-inventory" {
			if c.Mode != ModeAgent {
				t.Errorf("%s: mode %v, want the agents'", c.ID, c.Mode)
			}
		}
	}
}

// Minimal documents get upstream's defaults; YAML in upstream's singleton
// map shape reads as the JSON does.
func TestWhenDefaultsAndYAML(t *testing.T) {
	cases := map[string]string{
		`{"id":"k","when":{"per_pc":"once"},"job_id":"j","target":{"all":true}}`:                                                             `{"id":"k","when":{"per_pc":"once"},"job_id":"j","target":{"groups":[],"pcs":[],"all":true},"tz":"local","runs_on":"backend","enabled":true}`,
		"id: k\nwhen: { per_pc: { every: 6h } }\njob_id: j\ntarget: { groups: [lab] }\ntz: utc\n":                                            `{"id":"k","when":{"per_pc":{"every":"6h"}},"job_id":"j","target":{"groups":["lab"],"pcs":[],"all":false},"tz":"utc","runs_on":"backend","enabled":true}`,
		"id: g\nwhen:\n  calendar: { at: \"09:00\", days: [mon-fri] }\njob_id: j\ntarget: { all: true }\n":                                   `{"id":"g","when":{"calendar":{"at":"09:00","days":["mon-fri"]}},"job_id":"j","target":{"groups":[],"pcs":[],"all":true},"tz":"local","runs_on":"backend","enabled":true}`,
		"id: b\nwhen: { on: [startup, logon] }\njob_id: j\ntarget: { pcs: [PC1] }\nruns_on: agent\n":                                         `{"id":"b","when":{"on":["startup","logon"]},"job_id":"j","target":{"groups":[],"pcs":["PC1"],"all":false},"tz":"local","runs_on":"agent","enabled":true}`,
		"id: n\nwhen: { calendar: { at: \"03:00\", days: [1, 5, friL, tue#2] } }\njob_id: j\ntarget: { all: true }\nstarting_deadline: 1h\n": `{"id":"n","when":{"calendar":{"at":"03:00","days":["1","5","friL","tue#2"]}},"job_id":"j","target":{"groups":[],"pcs":[],"all":true},"tz":"local","starting_deadline":"1h","runs_on":"backend","enabled":true}`,
	}
	for in, want := range cases {
		ct := "application/yaml"
		if strings.HasPrefix(in, "{") {
			ct = "application/json"
		}
		c, raw, err := ParseSchedule([]byte(in), ct)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if string(raw) != want {
			t.Errorf("%q stored\n %s\nwant\n %s", in, raw, want)
		}
		if err := upstreamDecode(raw); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
		if c.Display() == "" {
			t.Errorf("%s: no display", raw)
		}
	}
}

func TestWhenDisplay(t *testing.T) {
	for ex, want := range map[string]string{
		specExamples[0]: "per_pc once", specExamples[1]: "per_pc every 6h", specExamples[2]: "at 09:00 [mon-fri]",
		specExamples[3]: "at 2026-06-10 09:00", specExamples[5]: "on [startup,logon,unlock]",
		`{"id":"t","when":{"per_target":{"every":"24h"}},"job_id":"j","target":{"all":true}}`: "per_target every 24h",
		`{"id":"t","when":{"calendar":{"at":"18:30"}},"job_id":"j","target":{"all":true}}`:    "at 18:30",
	} {
		c, _, err := ParseSchedule([]byte(ex), "")
		if err != nil {
			t.Fatal(err)
		}
		if c.Display() != want {
			t.Errorf("%s: display %q, want %q", ex, c.Display(), want)
		}
	}
}

// Upstream's validate rows, in its order, with its texts.
func TestWhenValidationTexts(t *testing.T) {
	base := func(extra string) string {
		return `{"id":"s","job_id":"j","target":{"all":true}` + extra + `}`
	}
	cases := []struct{ body, want string }{
		{base(`,"when":{"per_target":"once"},"runs_on":"agent"`), "invalid schedule: when.per_target needs fleet-wide completion data and is backend-only"},
		{base(`,"when":{"per_target":"once_per_version"}`), "invalid schedule: when.per_target: once_per_version is not supported"},
		{base(`,"when":{"per_pc":"once_per_version"},"runs_on":"agent"`), "invalid schedule: when.per_pc: once_per_version keys its dedup"},
		{base(`,"when":{"on":["startup"]}`), "invalid schedule: when.on (OS event trigger) is fired by the agent's own event source, so it requires runs_on: agent"},
		{base(`,"when":{"on":[]},"runs_on":"agent"`), "invalid schedule: when.on must list at least one trigger (e.g. [startup, logon])"},
		{base(`,"when":{"per_pc":{"every":"6"}}`), "invalid schedule: when.every: invalid duration '6': time unit needed, for example 6sec or 6ms"},
		{base(`,"when":{"per_pc":{"every":"6x"}}`), "invalid schedule: when.every: invalid duration '6x': unknown time unit \"x\""},
		{base(`,"when":{"calendar":{"at":"25:00"}}`), "invalid schedule: when.at: unparseable '25:00' (want HH:MM or YYYY-MM-DD HH:MM)"},
		{base(`,"when":{"calendar":{"at":"2026-06-10 09:00","days":["mon"]}}`), "invalid schedule: when.at with a date is a one-shot and cannot be combined with days"},
		{base(`,"when":{"calendar":{"at":"09:00","days":["mon-fri#2"]}}`), "invalid schedule: when.days: invalid day token 'mon-fri#2' (the part before # must be a single weekday; want mon..sun, 0-7, a range like mon-fri, an nth-weekday like tue#2, a last-weekday like friL, or *)"},
		{base(`,"when":{"calendar":{"at":"09:00","days":["tue#6"]}}`), "(the # ordinal must be 1..5 (e.g. tue#2 = 2nd Tuesday);"},
		{base(`,"when":{"calendar":{"at":"09:00","days":["L"]}}`), "(`L` (last-weekday) needs a weekday before it, e.g. friL;"},
		{base(`,"when":{"calendar":{"at":"09:00","days":["8L"]}}`), "(the part before L must be a single weekday (e.g. friL = last Friday);"},
		{base(`,"when":{"calendar":{"at":"09:00","days":["mon-"]}}`), "(empty range bound;"},
		{base(`,"when":{"calendar":{"at":"09:00","days":["mon,tue"]}}`), "('mon,tue' is not a day;"},
		{base(`,"when":{"calendar":{"at":"09:00","days":["funday"]}}`), "('funday' is not a day;"},
		{base(`,"when":{"per_pc":"once"},"jitter":"5"`), "invalid schedule: jitter: invalid duration '5': time unit needed"},
		{base(`,"when":{"per_pc":"once"},"starting_deadline":"soon"`), "invalid schedule: starting_deadline: invalid duration 'soon': expected number at 0"},
		{`{"id":"s","job_id":"j","when":{"per_pc":"once"}}`, "invalid schedule: target must specify at least one of `all` / `groups` / `pcs` (or set `rollout.waves`) — the exec boundary rejects an unspecified target, so the schedule would fail every tick"},
		{`{"id":"s","job_id":"j","when":{"calendar":{"at":"03:00"}},"runs_on":"agent"}`, "invalid schedule: target must specify at least one of `all` / `groups` / `pcs` — a runs_on: agent schedule"},
		{base(`,"when":{"calendar":{"at":"03:00"}},"runs_on":"agent","rollout":{"waves":[]}`), "invalid schedule: rollout waves are published by the backend and are ignored by runs_on: agent schedules"},
		{base(`,"when":{"calendar":{"at":"03:00"}},"rollout":{"waves":[]}`), "invalid schedule: rollout.waves must list at least one wave"},
		{base(`,"when":{"calendar":{"at":"03:00"}},"rollout":{"waves":[{"group":" ","delay":"0s"}]}`), "invalid schedule: rollout.waves[0].group must not be blank"},
		{base(`,"when":{"calendar":{"at":"03:00"}},"rollout":{"waves":[{"group":"a","delay":"0s"},{"group":"b","delay":"1h"}]},"starting_deadline":"30m"`), "invalid schedule: rollout.waves[1].delay ('1h') must be shorter than starting_deadline ('30m')"},
		{base(`,"when":{"per_pc":"once"},"deadline_at":"2026-01-01T00:00:00Z"`), "invalid schedule: deadline_at is computed by the scheduler"},
		{base(`,"when":{"per_pc":"once"},"active":{"from":"June"}`), "invalid schedule: active: unparseable bound 'June' (want YYYY-MM-DD or RFC3339)"},
		{base(`,"when":{"per_pc":"once"},"active":{"from":"2026-07-01","until":"2026-06-01"}`), "invalid schedule: active.from (2026-07-01) must be strictly before active.until (2026-06-01)"},
		{base(`,"when":{"per_pc":"once"},"constraints":{"window":"22:00"}`), "invalid schedule: constraints.window: '22:00' must be 'HH:MM-HH:MM'"},
		{base(`,"when":{"per_pc":"once"},"constraints":{"window":"22:00-25:00"}`), "invalid schedule: constraints.window: invalid time '25:00'"},
		{base(`,"when":{"per_pc":"once"},"constraints":{"window":"22:00-22:00"}`), "invalid schedule: constraints.window: start and end are equal ('22:00-22:00'); omit window for 'always'"},
		{base(`,"when":{"per_pc":"once"},"constraints":{"skip_dates":["2026/01/01"]}`), "invalid schedule: constraints.skip_dates: invalid date '2026/01/01'"},
		{base(`,"when":{"calendar":{"at":"03:00"}},"runs_on":"agent","constraints":{"max_concurrent":5}`), "invalid schedule: constraints.max_concurrent needs a central counter and is backend-only"},
		{base(`,"when":{"per_pc":"once"},"constraints":{"max_concurrent":0}`), "invalid schedule: constraints.max_concurrent must be >= 1 (0 would never fire; omit it for no cap)"},
		{base(`,"when":{"per_pc":"once"},"constraints":{"require":{"ac_power":true}}`), "invalid schedule: constraints.require (host-state env gates: ac_power / idle / cpu_below / network) is sensed in-process by the agent and needs runs_on: agent"},
		{base(`,"when":{"calendar":{"at":"03:00"}},"runs_on":"agent","constraints":{"require":{"cpu_below":0}}`), "invalid schedule: constraints.require.cpu_below must be in (0, 100] percent (got 0)"},
		{base(`,"when":{"per_pc":"once"},"on_failure":{"retry":{"max":3,"backoff":"500ms"}}`), "invalid schedule: on_failure.retry.backoff must be >= 1s (got '500ms')"},
		{base(`,"when":{"per_pc":"once"},"on_failure":{"retry":{"max":11,"backoff":"1m"}}`), "invalid schedule: on_failure.retry.max must be 1..=10 (got 11)"},
		{base(`,"when":{"per_pc":"once"},"tags":["a",""]`), "invalid schedule: tags must not contain empty entries"},
		// The first error wins: the per_target rule before a bad jitter.
		{base(`,"when":{"per_target":"once"},"runs_on":"agent","jitter":"x"`), "when.per_target needs fleet-wide"},
		// Decoding: enums, required when, strictness.
		{base(`,"when":{"per_pc":"onec"}`), "data did not match any variant of untagged enum PerPolicy"},
		{base(`,"when":{"per_pc":{"evry":"6h"}}`), "unknown field(s): when.per_pc.evry"},
		{base(`,"when":{"cron":"0 * * * * *"}`), "unknown field(s): when.cron"},
		{base(`,"when":{"per_pc":"once"},"tz":"UTC"`), "tz: unknown variant `UTC`, expected `local` or `utc`"},
		{base(`,"when":{"per_pc":"once"},"tz":"Europe/Berlin"`), "unknown variant `Europe/Berlin`"},
		{base(`,"when":{"per_pc":"once"},"runs_on":"everywhere"`), "runs_on: unknown variant `everywhere`"},
		{base(`,"when":{"per_pc":"once"},"constraints":{"windw":"22:00-05:00"},"note":1`), "unknown field(s): constraints.windw, note — check for typos; fields must match the current schema"},
		{base(`,"when":{"per_pc":"once"},"cron":"@hourly"`), "unknown field(s): cron"},
		{base(``), "missing field `when`"},
	}
	for _, c := range cases {
		_, _, err := ParseSchedule([]byte(c.body), "application/json")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got %v\nwant %q", c.body, err, c.want)
		}
	}
}

// The strict reader itself refuses what upstream cannot read, so the
// round-trip tests above could fail.
func TestUpstreamDecoderRefuses(t *testing.T) {
	for _, b := range []string{
		`{"id":"a","job_id":"j","cron":"@hourly","tz":"utc","enabled":true}`,
		`{"id":"a","job_id":"j","when":{"per_pc":"once"},"tz":"UTC"}`,
		`{"id":"a","job_id":"j","when":{"per_pc":"once"},"enabled":null}`,
		`{"id":"a","job_id":"j","when":{"per_pc":"once","per_target":"once"}}`,
		`{"id":"a","job_id":"j","when":{"calendar":{"days":["mon"]}}}`,
		`{"id":"a","job_id":"j","when":{"per_pc":"once"},"constraints":{"max_concurrent":-1}}`,
	} {
		if upstreamDecode([]byte(b)) == nil {
			t.Errorf("strict reader accepted %s", b)
		}
	}
}

// A cron schedule whose fires a calendar names exactly is stored as that
// calendar (readable by upstream); any other stays in the cron extension,
// with tz never written as UTC.
func TestCronConvertedWhereExact(t *testing.T) {
	cases := map[string]string{
		`{"id":"a","job_id":"j","cron":"0 0 9 * * mon-fri","tz":"UTC"}`:                                      `{"id":"a","when":{"calendar":{"at":"09:00","days":["mon-fri"]}},"job_id":"j","target":{"groups":[],"pcs":[],"all":true},"tz":"utc","runs_on":"backend","enabled":true}`,
		`{"id":"a","job_id":"j","cron":"30 18 * * *","tz":"local","enabled":false,"target":{"pcs":["PC1"]}}`: `{"id":"a","when":{"calendar":{"at":"18:30"}},"job_id":"j","target":{"groups":[],"pcs":["PC1"],"all":false},"tz":"local","runs_on":"backend","enabled":false}`,
		`{"id":"a","job_id":"j","cron":"0 3 * * 1,7"}`:                                                       `{"id":"a","when":{"calendar":{"at":"03:00","days":["1","7"]}},"job_id":"j","target":{"groups":[],"pcs":[],"all":true},"tz":"utc","runs_on":"backend","enabled":true}`,
	}
	for in, want := range cases {
		_, raw, err := ParseSchedule([]byte(in), "")
		if err != nil || string(raw) != want {
			t.Errorf("%s:\n got %s (%v)\nwant %s", in, raw, err, want)
		}
	}
	for _, in := range []string{
		`{"id":"a","job_id":"j","cron":"*/15 * * * *"}`,
		`{"id":"a","job_id":"j","cron":"0 9 * * *","tz":"Europe/Berlin"}`,
		`{"id":"a","job_id":"j","cron":"0 9 1 * *"}`,
		`{"id":"a","job_id":"j","cron":"5 0 9 * * *"}`,
		`{"id":"a","job_id":"j","cron":"@daily"}`,
		`{"id":"a","job_id":"j","cron":"0 9 * * *","note":"kept"}`,
	} {
		_, raw, err := ParseSchedule([]byte(in), "")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(raw, []byte(`"cron"`)) || bytes.Contains(raw, []byte(`"UTC"`)) {
			t.Errorf("%s stored as %s", in, raw)
		}
	}
	// Legacy upstream reconcile fields are refused, not fired every tick.
	if _, _, err := ParseSchedule([]byte(`{"id":"a","job_id":"j","cron":"0 */30 * * * *","mode":"once_per_pc","cooldown":"6h"}`), ""); err == nil || !strings.Contains(err.Error(), "mode, cooldown") {
		t.Errorf("legacy mode accepted: %v", err)
	}
}

// Decoding a stored blob (not the strict create path) still names an
// unknown when variant.
func TestWhenStoredUnknownVariant(t *testing.T) {
	s, err := decodeStored([]byte(`{"id":"s","job_id":"j","when":{"cron":"0 * * * * *"}}`))
	if err == nil || !strings.Contains(err.Error(), "unknown variant `cron`") {
		t.Errorf("decode: %v %+v", err, s)
	}
}

// A stored deadline_at, refused at create, is read (and ignored) as
// upstream's readers do.
func TestWhenStoredDeadlineAt(t *testing.T) {
	b := `{"id":"s","when":{"per_pc":"once"},"job_id":"j","target":{"groups":[],"pcs":[],"all":true},"deadline_at":"2026-01-01T00:00:00Z","tz":"utc","runs_on":"backend","enabled":true}`
	s, err := decodeStored([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Compile(); err != nil {
		t.Errorf("stored deadline_at refused: %v", err)
	}
	if _, _, err := ParseSchedule([]byte(b), ""); err == nil || !strings.Contains(err.Error(), "deadline_at is computed") {
		t.Errorf("create took deadline_at: %v", err)
	}
}

// An agents' calendar is not ticked here but has its fires previewed.
func TestWhenAgentCalendarPreview(t *testing.T) {
	s, err := decodeStored([]byte(specExamples[4]))
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Compile()
	if err != nil || c.Mode != ModeAgent {
		t.Fatalf("%v %v", c, err)
	}
	c.Spec, _ = parseCalendar(*s.When.Calendar, time.UTC)
	if f := c.fires(mustTime(t, "2026-06-01T00:00:00Z"), 2); strings.Join(f, " ") != "2026-06-09T03:00:00+00:00 2026-07-14T03:00:00+00:00" {
		t.Errorf("fires %v", f)
	}
}
