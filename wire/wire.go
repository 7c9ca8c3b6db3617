// Package wire is the kanade agent wire contract: the JSON messages agents and
// the backend exchange, and the NATS subjects they travel on. It does no I/O.
//
// Every JSON name here is part of the contract in shared/wire-contract.md and
// must not change. Decoding is tolerant: unknown fields are ignored, because
// agents of several versions run side by side.
package wire

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Stream, bucket and object-store names fixed by the contract.
const (
	StreamResults = "RESULTS"
	StreamEvents  = "EVENTS"
	StreamExec    = "EXEC"

	ObjectStoreOutput = "result_output"

	BucketJobs        = "jobs"
	BucketSchedules   = "schedules"
	BucketAgentGroups = "agent_groups"
)

// Subjects of the agent protocol.
const (
	SubjectCommandsAll   = "commands.all"
	SubjectResultsAll    = "results.>"
	SubjectEventsAll     = "events.>"
	SubjectStartedAll    = "events.started.>"
	SubjectHeartbeatsAll = "heartbeat.>"
	SubjectCommandsAny   = "commands.>"
)

// CommandsGroup is the subject that reaches every agent of group g.
func CommandsGroup(g string) string { return "commands.group." + g }

// CommandsPC is the subject that reaches one agent.
func CommandsPC(pcID string) string { return "commands.pc." + pcID }

// Results is the subject an agent publishes an ExecResult on.
func Results(requestID string) string { return "results." + requestID }

// Started is the subject an agent publishes an EventStarted on.
func Started(execID, pcID string) string { return "events.started." + execID + "." + pcID }

// HeartbeatSubject is the core subject an agent heartbeats on.
func HeartbeatSubject(pcID string) string { return "heartbeat." + pcID }

// JobTail is the request/reply subject of an agent's live output buffer.
func JobTail(pcID string) string { return "job.tail." + pcID }

// Kill is the subject that stops every run of an execution.
func Kill(execID string) string { return "kill." + execID }

// Ping is the request/reply subject an agent answers with a Heartbeat.
func Ping(pcID string) string { return "agents." + pcID + ".ping" }

// OutputObjectKey is the object-store key an agent uses for a large stream
// ("stdout" or "stderr") of one request.
func OutputObjectKey(requestID, stream string) string { return requestID + "/" + stream }

// ValidToken reports whether s can stand as one token of a subject: not empty,
// no dots, wildcards or white space. pc_ids and group names must pass it.
func ValidToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}

// Staleness tells an agent how to treat a cached script.
type Staleness struct {
	Mode string `json:"mode"`
}

// Retry asks the agent to retry a failed run.
type Retry struct {
	Max         int `json:"max"`
	BackoffSecs int `json:"backoff_secs"`
}

// Command is what the backend publishes on commands.* for agents to run.
type Command struct {
	ID              string     `json:"id"`
	Version         string     `json:"version"`
	RequestID       string     `json:"request_id"`
	ExecID          *string    `json:"exec_id"`
	Shell           string     `json:"shell"`
	Script          string     `json:"script"`
	TimeoutSecs     int64      `json:"timeout_secs"`
	JitterSecs      *int64     `json:"jitter_secs"`
	RunAs           string     `json:"run_as"`
	Staleness       Staleness  `json:"staleness"`
	Cwd             string     `json:"cwd,omitempty"`
	DeadlineAt      *time.Time `json:"deadline_at,omitempty"`
	ScriptObject    string     `json:"script_object,omitempty"`
	ScriptObjectSHA string     `json:"script_object_sha256,omitempty"`
	Retry           *Retry     `json:"retry,omitempty"`
}

// Shells an agent knows.
const (
	ShellPowershell = "powershell"
	ShellPwsh       = "pwsh"
	ShellCmd        = "cmd"
	ShellSh         = "sh"
)

// ValidShell reports whether s is a shell agents accept.
func ValidShell(s string) bool {
	switch s {
	case ShellPowershell, ShellPwsh, ShellCmd, ShellSh:
		return true
	}
	return false
}

// ValidRunAs reports whether s is a run_as value agents accept.
func ValidRunAs(s string) bool {
	switch s {
	case "system", "user", "system_gui":
		return true
	}
	return false
}

// ExecResult is what an agent publishes on results.{request_id} when a run ends.
type ExecResult struct {
	ResultID       string    `json:"result_id"`
	RequestID      string    `json:"request_id"`
	ExecID         *string   `json:"exec_id,omitempty"`
	PCID           string    `json:"pc_id"`
	ExitCode       int64     `json:"exit_code"` // required: DecodeResult rejects a result without it
	Stdout         string    `json:"stdout"`
	Stderr         string    `json:"stderr"`
	StartedAt      time.Time `json:"started_at"`
	FinishedAt     time.Time `json:"finished_at"`
	ManifestID     *string   `json:"manifest_id,omitempty"`
	Skipped        bool      `json:"skipped,omitempty"`
	ParentResultID *string   `json:"parent_result_id,omitempty"`
	StdoutObject   *string   `json:"stdout_object,omitempty"`
	StderrObject   *string   `json:"stderr_object,omitempty"`
	CollectObject  *string   `json:"collect_object,omitempty"`
}

// Synthetic exit codes agents report instead of running a script.
const (
	ExitKilled      = -1
	ExitUnsupported = 122
	ExitRefused     = 123
	ExitVersionPin  = 124
	ExitDeadline    = 125
	ExitRevoked     = 126
	ExitStaleness   = 127
)

// EventStarted is what an agent publishes when a run of an exec starts.
type EventStarted struct {
	ResultID   string    `json:"result_id"`
	RequestID  string    `json:"request_id"`
	ExecID     string    `json:"exec_id"`
	PCID       string    `json:"pc_id"`
	StartedAt  time.Time `json:"started_at"`
	ManifestID *string   `json:"manifest_id,omitempty"`
	Version    *string   `json:"version,omitempty"`
}

// Heartbeat is an agent's periodic sign of life, also its answer to a ping.
type Heartbeat struct {
	PCID                  string    `json:"pc_id"`
	At                    time.Time `json:"at"`
	AgentVersion          string    `json:"agent_version"`
	Hostname              *string   `json:"hostname,omitempty"`
	OSFamily              *string   `json:"os_family,omitempty"`
	AgentCPUPct           *float64  `json:"agent_cpu_pct,omitempty"`
	AgentRSSBytes         *int64    `json:"agent_rss_bytes,omitempty"`
	LastLogonUser         *string   `json:"last_logon_user,omitempty"`
	LastLogonDisplayName  *string   `json:"last_logon_display_name,omitempty"`
	CommandKeys           []string  `json:"command_keys,omitempty"`
	Enforcing             *bool     `json:"enforcing,omitempty"`
	CommandProtocols      []string  `json:"command_protocols,omitempty"`
	QuarantinedVersions   []string  `json:"quarantined_versions,omitempty"`
	AgentDiskReadBytes    *int64    `json:"agent_disk_read_bytes,omitempty"`
	AgentDiskWrittenBytes *int64    `json:"agent_disk_written_bytes,omitempty"`
}

// JobTailRequest asks an agent for the live output of one run.
type JobTailRequest struct {
	ResultID string `json:"result_id"`
}

// JobTailReply is an agent's live output buffer for one run. Every field
// defaults to false or "".
type JobTailReply struct {
	Found           bool   `json:"found"`
	Running         bool   `json:"running"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
}

// legacyNamespace is UUID namespace OID, fixed by the contract.
var legacyNamespace = uuid.NameSpaceOID

// LegacyResultID derives the result id of an agent that sends none, so that
// a redelivery of the same result maps to the same row.
func LegacyResultID(requestID, pcID string) string {
	return uuid.NewSHA1(legacyNamespace, []byte("kanade-issue-19/legacy-result-id:"+requestID+":"+pcID)).String()
}

// UnmarshalJSON accepts the old name job_id for exec_id.
func (c *Command) UnmarshalJSON(b []byte) error {
	type plain Command
	var v struct {
		plain
		JobID *string `json:"job_id"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*c = Command(v.plain)
	if c.ExecID == nil && v.JobID != nil {
		c.ExecID = v.JobID
	}
	return nil
}

// UnmarshalJSON accepts the old name job_id for exec_id. It does not check
// that exit_code is present (a missing one reads as 0): DecodeResult does.
func (r *ExecResult) UnmarshalJSON(b []byte) error {
	v, _, err := unmarshalResult(b)
	*r = v
	return err
}

// unmarshalResult decodes into a shadow type without the method, so the
// payload is scanned twice (json.Unmarshal's validity check, then the
// decode), not three times: json.Unmarshal into *ExecResult would check
// the whole payload, call the method, and check and decode it again. The projector decodes
// every result, and outputs make them kilobytes long. hasExit reports
// whether exit_code was present and not null, seen in the same pass: the
// shadow's own exit_code field is shallower than the embedded one, so
// encoding/json fills it instead.
func unmarshalResult(b []byte) (r ExecResult, hasExit bool, err error) {
	type plain ExecResult
	var v struct {
		plain
		ExitCode *int64  `json:"exit_code"`
		JobID    *string `json:"job_id"`
	}
	err = json.Unmarshal(b, &v)
	r = ExecResult(v.plain)
	if v.ExitCode != nil {
		r.ExitCode, hasExit = *v.ExitCode, true
	}
	if err != nil {
		return r, hasExit, err
	}
	if r.ExecID == nil && v.JobID != nil {
		r.ExecID = v.JobID
	}
	return r, hasExit, nil
}

// UnmarshalJSON accepts the old name job_id for exec_id.
func (e *EventStarted) UnmarshalJSON(b []byte) error {
	v, err := unmarshalStarted(b)
	*e = v
	return err
}

// unmarshalStarted is unmarshalResult's twin for EventStarted.
func unmarshalStarted(b []byte) (EventStarted, error) {
	type plain EventStarted
	var v struct {
		plain
		JobID *string `json:"job_id"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return EventStarted(v.plain), err
	}
	e := EventStarted(v.plain)
	if e.ExecID == "" && v.JobID != nil {
		e.ExecID = *v.JobID
	}
	return e, nil
}

// DecodeResult decodes and checks an ExecResult: request_id, pc_id and
// exit_code are required (a null exit_code is missing: without it a result
// would read as a success), and a missing result_id is replaced by the
// legacy derived id.
func DecodeResult(b []byte) (ExecResult, error) {
	r, hasExit, err := unmarshalResult(b)
	if err != nil {
		return r, fmt.Errorf("decode ExecResult: %w", err)
	}
	if r.RequestID == "" {
		return r, fmt.Errorf("decode ExecResult: missing request_id")
	}
	if r.PCID == "" {
		return r, fmt.Errorf("decode ExecResult: missing pc_id")
	}
	if !hasExit {
		return r, fmt.Errorf("decode ExecResult: missing exit_code")
	}
	if r.ResultID == "" {
		r.ResultID = LegacyResultID(r.RequestID, r.PCID)
	}
	return r, nil
}

// DecodeStarted decodes and checks an EventStarted. A missing result_id is
// replaced by the legacy derived id, as for results.
func DecodeStarted(b []byte) (EventStarted, error) {
	e, err := unmarshalStarted(b)
	if err != nil {
		return e, fmt.Errorf("decode EventStarted: %w", err)
	}
	if e.RequestID == "" {
		return e, fmt.Errorf("decode EventStarted: missing request_id")
	}
	if e.PCID == "" {
		return e, fmt.Errorf("decode EventStarted: missing pc_id")
	}
	if e.ResultID == "" {
		e.ResultID = LegacyResultID(e.RequestID, e.PCID)
	}
	return e, nil
}

// DecodeHeartbeat decodes and checks a Heartbeat (pc_id required).
func DecodeHeartbeat(b []byte) (Heartbeat, error) {
	var h Heartbeat
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("decode Heartbeat: %w", err)
	}
	if h.PCID == "" {
		return h, fmt.Errorf("decode Heartbeat: missing pc_id")
	}
	return h, nil
}
