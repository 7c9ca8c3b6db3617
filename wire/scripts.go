package wire

// Script lifecycle buckets agents read before running a Command (upstream's
// gates): raw bytes, not JSON.
const (
	// BucketScriptStatus maps a Command id (the job id) to ScriptActive or
	// ScriptRevoked; an agent skips a REVOKED id with ExitRevoked.
	BucketScriptStatus = "script_status"
	// BucketScriptCurrent maps a job id to the manifest version last
	// published; an agent skips a Command of another version with
	// ExitVersionPin.
	BucketScriptCurrent = "script_current"

	ScriptActive  = "ACTIVE"
	ScriptRevoked = "REVOKED"
)

// AdhocRunID is the Command id of an ad-hoc run (POST /api/run): revoking
// it makes every ad-hoc run exit 126, as upstream.
const (
	AdhocRunID      = "adhoc-run"
	AdhocRunVersion = "0.0.0"
)
