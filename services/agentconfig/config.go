// Package agentconfig is layered agent configuration in KV agent_config:
// a global scope, one per group (groups.{name}) and one per PC
// (pcs.{pc_id}), each a ConfigScope of optional fields, merged built-in <
// global < the PC's groups in alphabetical order < the PC. Agents run the
// same resolution from a watch of the bucket; this package serves the
// scopes, the built-in defaults and the resolved views (effective_config,
// inherited), and its Resolve is what the simulated agents apply.
package agentconfig

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scope is one layer. Every field is optional and omitted when unset; null
// means unset. Unknown fields are ignored.
type Scope struct {
	MaxLocalConcurrent   *uint32 `json:"max_local_concurrent,omitempty"`
	TargetVersion        *string `json:"target_version,omitempty"`
	TargetVersionJitter  *string `json:"target_version_jitter,omitempty"`
	HeartbeatInterval    *string `json:"heartbeat_interval,omitempty"`
	HostPerfInterval     *string `json:"host_perf_interval,omitempty"`
	ProcessPerfEnabled   *bool   `json:"process_perf_enabled,omitempty"`
	ProcessPerfExpiresAt *string `json:"process_perf_expires_at,omitempty"`
	ProcessPerfTopN      *uint32 `json:"process_perf_top_n,omitempty"`
	ClientDisplayName    *string `json:"client_display_name,omitempty"`
}

// Effective is the resolved configuration: every key always present.
type Effective struct {
	MaxLocalConcurrent   *uint32 `json:"max_local_concurrent"`
	TargetVersion        *string `json:"target_version"`
	TargetVersionJitter  string  `json:"target_version_jitter"`
	HeartbeatInterval    string  `json:"heartbeat_interval"`
	HostPerfInterval     string  `json:"host_perf_interval"`
	ProcessPerfEnabled   bool    `json:"process_perf_enabled"`
	ProcessPerfExpiresAt *string `json:"process_perf_expires_at"`
	ProcessPerfTopN      uint32  `json:"process_perf_top_n"`
	ClientDisplayName    *string `json:"client_display_name"`
}

// Defaults are the built-in values (GET /api/config/defaults).
func Defaults() Effective {
	return Effective{
		TargetVersionJitter: "10m", HeartbeatInterval: "30s", HostPerfInterval: "60s",
		ProcessPerfTopN: 20,
	}
}

// Fields are the scope's field names, in upstream's order.
var Fields = []string{"max_local_concurrent", "target_version", "target_version_jitter",
	"heartbeat_interval", "host_perf_interval", "process_perf_enabled", "process_perf_expires_at",
	"process_perf_top_n", "client_display_name"}

// set lists the fields s sets.
func (s Scope) set() []string {
	var out []string
	for _, f := range Fields {
		if s.has(f) {
			out = append(out, f)
		}
	}
	return out
}

func (s Scope) has(f string) bool {
	switch f {
	case "max_local_concurrent":
		return s.MaxLocalConcurrent != nil
	case "target_version":
		return s.TargetVersion != nil
	case "target_version_jitter":
		return s.TargetVersionJitter != nil
	case "heartbeat_interval":
		return s.HeartbeatInterval != nil
	case "host_perf_interval":
		return s.HostPerfInterval != nil
	case "process_perf_enabled":
		return s.ProcessPerfEnabled != nil
	case "process_perf_expires_at":
		return s.ProcessPerfExpiresAt != nil
	case "process_perf_top_n":
		return s.ProcessPerfTopN != nil
	case "client_display_name":
		return s.ClientDisplayName != nil
	}
	return false
}

// fieldValue is a set field's value as text, for warnings.
func (s Scope) fieldValue(f string) string {
	b, _ := json.Marshal(s)
	var m map[string]json.RawMessage
	json.Unmarshal(b, &m)
	v := string(m[f])
	if u, err := strconv.Unquote(v); err == nil {
		return u
	}
	return v
}

// apply lays s over e.
func (e *Effective) apply(s Scope) {
	if s.MaxLocalConcurrent != nil {
		e.MaxLocalConcurrent = s.MaxLocalConcurrent
	}
	if s.TargetVersion != nil {
		e.TargetVersion = s.TargetVersion
	}
	if s.TargetVersionJitter != nil {
		e.TargetVersionJitter = *s.TargetVersionJitter
	}
	if s.HeartbeatInterval != nil {
		e.HeartbeatInterval = *s.HeartbeatInterval
	}
	if s.HostPerfInterval != nil {
		e.HostPerfInterval = *s.HostPerfInterval
	}
	if s.ProcessPerfEnabled != nil {
		e.ProcessPerfEnabled = *s.ProcessPerfEnabled
	}
	if s.ProcessPerfExpiresAt != nil {
		e.ProcessPerfExpiresAt = s.ProcessPerfExpiresAt
	}
	if s.ProcessPerfTopN != nil {
		e.ProcessPerfTopN = *s.ProcessPerfTopN
	}
	if s.ClientDisplayName != nil {
		e.ClientDisplayName = s.ClientDisplayName
	}
}

// Layers are the scopes that apply to one PC.
type Layers struct {
	Global *Scope
	Groups map[string]Scope // the PC's groups that have a scope
	PC     *Scope
}

// Resolve merges built-in < global < the groups in alphabetical order
// (the last wins) < the PC, and warns of each field two or more groups
// set.
func Resolve(l Layers) (Effective, []string) {
	e := Defaults()
	if l.Global != nil {
		e.apply(*l.Global)
	}
	names := make([]string, 0, len(l.Groups))
	for g := range l.Groups {
		names = append(names, g)
	}
	slices.Sort(names)
	setBy := map[string][]string{}
	for _, g := range names {
		s := l.Groups[g]
		for _, f := range s.set() {
			setBy[f] = append(setBy[f], g)
		}
		e.apply(s)
	}
	warnings := []string{}
	for _, f := range Fields {
		gs := setBy[f]
		if len(gs) < 2 {
			continue
		}
		last := l.Groups[gs[len(gs)-1]].fieldValue(f)
		warnings = append(warnings, fmt.Sprintf("multi-group conflict on `%s` — set by [%s]; alphabetical last wins (=> %s)",
			f, strings.Join(gs, ", "), last))
	}
	if l.PC != nil {
		e.apply(*l.PC)
	}
	return e, warnings
}

// Duration reads a humantime duration ("30s", "10m", "1h 30m", "2h30m").
func Duration(s string) (time.Duration, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	for _, r := range []struct{ from, to string }{{"days", "d"}, {"day", "d"}, {"hours", "h"}, {"hour", "h"},
		{"mins", "m"}, {"min", "m"}, {"secs", "s"}, {"sec", "s"}} {
		t = strings.ReplaceAll(t, r.from, r.to)
	}
	var total time.Duration
	if d, rest, ok := strings.Cut(t, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		total = time.Duration(n) * 24 * time.Hour
		t = rest
		if t == "" {
			return total, nil
		}
	}
	d, err := time.ParseDuration(t)
	if err != nil || t == "" {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return total + d, nil
}

// SetField sets one field from its text form, as upstream's CLI grammar
// reads it; an error is the 400's text.
func (s *Scope) SetField(field, value string) error {
	str := func() *string { v := value; return &v }
	dur := func() (*string, error) {
		if _, err := Duration(value); err != nil {
			return nil, fmt.Errorf("invalid duration for %s: %v", field, err)
		}
		return str(), nil
	}
	var err error
	switch field {
	case "max_local_concurrent":
		n, perr := strconv.ParseUint(strings.TrimSpace(value), 10, 32)
		if perr != nil || n < 1 {
			return fmt.Errorf("expected an integer >= 1")
		}
		v := uint32(n)
		s.MaxLocalConcurrent = &v
	case "process_perf_top_n":
		n, perr := strconv.ParseUint(strings.TrimSpace(value), 10, 32)
		if perr != nil || n < 1 {
			return fmt.Errorf("expected positive integer")
		}
		v := uint32(n)
		s.ProcessPerfTopN = &v
	case "target_version":
		s.TargetVersion = str()
	case "client_display_name":
		s.ClientDisplayName = str()
	case "target_version_jitter":
		s.TargetVersionJitter, err = dur()
	case "heartbeat_interval":
		s.HeartbeatInterval, err = dur()
	case "host_perf_interval":
		s.HostPerfInterval, err = dur()
	case "process_perf_enabled":
		switch strings.TrimSpace(value) {
		case "true":
			v := true
			s.ProcessPerfEnabled = &v
		case "false":
			v := false
			s.ProcessPerfEnabled = &v
		default:
			return fmt.Errorf("expected true|false")
		}
	case "process_perf_expires_at":
		t, perr := time.Parse(time.RFC3339Nano, strings.TrimSpace(value))
		if perr != nil {
			return fmt.Errorf("expected an RFC 3339 timestamp: %v", perr)
		}
		v := t.UTC().Format(time.RFC3339Nano)
		s.ProcessPerfExpiresAt = &v
	default:
		return fmt.Errorf("unknown field '%s' — supported: %s", field, strings.Join(Fields, ", "))
	}
	return err
}

// UnsetField clears one field; false when it was not set.
func (s *Scope) UnsetField(field string) (bool, error) {
	if !slices.Contains(Fields, field) {
		return false, fmt.Errorf("unknown field '%s' — supported: %s", field, strings.Join(Fields, ", "))
	}
	was := s.has(field)
	switch field {
	case "max_local_concurrent":
		s.MaxLocalConcurrent = nil
	case "target_version":
		s.TargetVersion = nil
	case "target_version_jitter":
		s.TargetVersionJitter = nil
	case "heartbeat_interval":
		s.HeartbeatInterval = nil
	case "host_perf_interval":
		s.HostPerfInterval = nil
	case "process_perf_enabled":
		s.ProcessPerfEnabled = nil
	case "process_perf_expires_at":
		s.ProcessPerfExpiresAt = nil
	case "process_perf_top_n":
		s.ProcessPerfTopN = nil
	case "client_display_name":
		s.ClientDisplayName = nil
	}
	return was, nil
}

// Key names a scope's KV key: "global", "groups.{name}", "pcs.{pc_id}".
func GroupKey(name string) string { return "groups." + name }

// PCKey is a PC's scope key.
func PCKey(pc string) string { return "pcs." + pc }

// GlobalKey is the global scope's key.
const GlobalKey = "global"
