package wire

import (
	"bytes"
	"encoding/json"
)

// KV buckets of fleet management, as upstream names them: membership an
// operator sets (BucketAgentGroups) and the backend derives from group
// definitions, free-form metadata per PC, and layered agent config.
const (
	BucketAgentGroupsDerived = "agent_groups_derived"
	BucketAgentMeta          = "agent_meta"
	BucketAgentConfig        = "agent_config"
	BucketGroupDefs          = "group_defs"
	BucketGroupDefsYAML      = "group_defs_yaml"
)

// LogsFetch is the request/reply subject of an agent's own log.
func LogsFetch(pcID string) string { return "logs.fetch." + pcID }

// LogsRequest asks an agent for the last TailLines lines of its log.
type LogsRequest struct {
	TailLines *uint32 `json:"tail_lines,omitempty"`
}

// DefaultLogLines is the tail an agent sends when the request names none.
const DefaultLogLines = 500

// MaxLogReply caps an agent's log reply; a longer tail is cut at its start.
const MaxLogReply = 800 << 10

// AgentGroups is the value of a PC's key in agent_groups and
// agent_groups_derived: {"groups":[…]}, sorted and deduplicated.
type AgentGroups struct {
	Groups []string `json:"groups"`
}

// DecodeAgentGroups reads an agent_groups value: upstream's
// {"groups":[…]}, or a bare JSON array (this project wrote those once).
func DecodeAgentGroups(b []byte) (AgentGroups, error) {
	var g AgentGroups
	t := bytes.TrimSpace(b)
	if len(t) > 0 && t[0] == '[' {
		err := json.Unmarshal(t, &g.Groups)
		return g, err
	}
	if err := json.Unmarshal(t, &g); err != nil {
		return AgentGroups{}, err
	}
	return g, nil
}
