package signing

import (
	"time"

	"github.com/google/uuid"

	"github.com/kanade-go/kanade/wire"
)

// RefusalResultID is the result_id of an enforcing agent's refusal of a
// request: UUIDv5(OID, "{request_id}|{pc_id}|signature-refused"), so
// repeated refusals collapse onto one row.
func RefusalResultID(requestID, pcID string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(requestID+"|"+pcID+"|signature-refused")).String()
}

// Refusal is the ExecResult an enforcing agent publishes instead of
// running cmd: exit 123, a failure (not skipped), stderr "refused: <why>",
// started and finished at now.
func Refusal(cmd wire.Command, pcID string, v Verdict, now time.Time) wire.ExecResult {
	r := wire.ExecResult{
		ResultID:   RefusalResultID(cmd.RequestID, pcID),
		RequestID:  cmd.RequestID,
		ExecID:     cmd.ExecID,
		PCID:       pcID,
		ExitCode:   wire.ExitRefused,
		Stderr:     "refused: " + v.Reason(),
		StartedAt:  now.UTC(),
		FinishedAt: now.UTC(),
	}
	if cmd.ID != "" {
		id := cmd.ID
		r.ManifestID = &id
	}
	return r
}

// IsRefusal reports whether r is a signature refusal: exit 123 and the
// derived result_id, nothing less.
func IsRefusal(r wire.ExecResult) bool {
	return r.ExitCode == wire.ExitRefused && r.ResultID == RefusalResultID(r.RequestID, r.PCID)
}
