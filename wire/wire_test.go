package wire

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// roundTrip decodes the contract's example, encodes it again and checks that
// every field of the example survives with the same JSON value.
func roundTrip[T any](t *testing.T, example string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(example), &v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	var want, got map[string]any
	json.Unmarshal([]byte(example), &want)
	json.Unmarshal(out, &got)
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("field %s: got %v, want %v (json %s)", k, got[k], w, out)
		}
	}
	return v
}

func TestCommandRoundTrip(t *testing.T) {
	c := roundTrip[Command](t, `{"id":"inventory-hw","version":"1.0.0","request_id":"5f0c2a9e-0000-4000-8000-000000000001","exec_id":"3c3c56b3-0000-4000-8000-000000000002",
 "shell":"powershell","script":"Get-CimInstance Win32_BIOS","timeout_secs":300,
 "jitter_secs":null,"run_as":"system","staleness":{"mode":"cached"}}`)
	if c.ExecID == nil || *c.ExecID != "3c3c56b3-0000-4000-8000-000000000002" || c.TimeoutSecs != 300 {
		t.Fatalf("decoded %+v", c)
	}
	// An ad-hoc run has exec_id null, and optional fields are omitted.
	out, _ := json.Marshal(Command{ID: "x", Staleness: Staleness{Mode: "cached"}})
	var m map[string]any
	json.Unmarshal(out, &m)
	if v, ok := m["exec_id"]; !ok || v != nil {
		t.Errorf("exec_id must be present and null: %s", out)
	}
	for _, k := range []string{"cwd", "deadline_at", "script_object", "retry"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s must be omitted when unset: %s", k, out)
		}
	}
}

func TestExecResultRoundTrip(t *testing.T) {
	r := roundTrip[ExecResult](t, `{"result_id":"b1d6","request_id":"5f0c","exec_id":"3c3c","pc_id":"PC1","exit_code":0,
 "stdout":"ok\n","stderr":"","started_at":"2026-05-16T00:00:00Z","finished_at":"2026-05-16T00:00:05Z",
 "manifest_id":"inventory-hw"}`)
	if r.FinishedAt.Sub(r.StartedAt) != 5*time.Second {
		t.Fatalf("times: %v %v", r.StartedAt, r.FinishedAt)
	}
}

func TestEventStartedRoundTrip(t *testing.T) {
	roundTrip[EventStarted](t, `{"result_id":"b1d6","request_id":"5f0c","exec_id":"3c3c","pc_id":"PC1",
 "started_at":"2026-05-20T12:00:00Z","manifest_id":"inventory-hw","version":"1.0.0"}`)
}

func TestHeartbeatRoundTrip(t *testing.T) {
	roundTrip[Heartbeat](t, `{"pc_id":"PC1","at":"2026-05-16T00:00:00Z","agent_version":"0.44.36","hostname":"PC1","os_family":"windows"}`)
}

func TestJobTailRoundTrip(t *testing.T) {
	roundTrip[JobTailRequest](t, `{"result_id":"b1d6"}`)
	roundTrip[JobTailReply](t, `{"found":true,"running":true,"stdout":"progress 50%\n","stderr":"","stdout_truncated":false,"stderr_truncated":false}`)
	var r JobTailReply
	if err := json.Unmarshal([]byte(`{"found":false}`), &r); err != nil || r.Found || r.Running {
		t.Fatalf("defaults: %+v %v", r, err)
	}
}

func TestTolerantDecoding(t *testing.T) {
	// Unknown fields are ignored, job_id is the old name of exec_id, and
	// fractional seconds parse.
	r, err := DecodeResult([]byte(`{"request_id":"r1","pc_id":"PC1","job_id":"e1","exit_code":3,"future_field":{"a":1},
	  "started_at":"2026-05-16T00:00:05.123456789Z","finished_at":"2026-05-16T00:00:06Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.ExecID == nil || *r.ExecID != "e1" {
		t.Errorf("job_id not taken as exec_id: %+v", r.ExecID)
	}
	if r.ResultID != LegacyResultID("r1", "PC1") {
		t.Errorf("missing result_id not derived: %q", r.ResultID)
	}
	if r.StartedAt.Nanosecond() != 123456789 {
		t.Errorf("fraction lost: %v", r.StartedAt)
	}
	e, err := DecodeStarted([]byte(`{"request_id":"r1","pc_id":"PC1","job_id":"e1","started_at":"2026-05-16T00:00:05Z"}`))
	if err != nil || e.ExecID != "e1" || e.ResultID != r.ResultID {
		t.Errorf("started: %+v %v", e, err)
	}
	for _, bad := range []string{`not json`, `{"pc_id":"PC1","exit_code":0}`, `{"request_id":"r","exit_code":0}`,
		`{"request_id":"r","pc_id":7,"exit_code":0}`, `{"request_id":"r","pc_id":"PC1","exit_code":"0"}`} {
		if _, err := DecodeResult([]byte(bad)); err == nil {
			t.Errorf("DecodeResult(%s) accepted", bad)
		}
	}
}

// exit_code is required: a result without it (or with null) would
// otherwise read as exit 0, a success.
func TestDecodeResultRequiresExitCode(t *testing.T) {
	for _, bad := range []string{
		`{"request_id":"r","pc_id":"PC1","stdout":"ok"}`,
		`{"request_id":"r","pc_id":"PC1","exit_code":null}`,
		`{"request_id":"r","pc_id":"PC1","exit_code":null,"skipped":true}`,
	} {
		_, err := DecodeResult([]byte(bad))
		if err == nil || !strings.Contains(err.Error(), "missing exit_code") {
			t.Errorf("DecodeResult(%s) = %v, want missing exit_code", bad, err)
		}
	}
	for in, want := range map[string]int64{
		`{"request_id":"r","pc_id":"PC1","exit_code":0}`:                      0,
		`{"exit_code":-1,"request_id":"r","pc_id":"PC1"}`:                     -1,
		`{"request_id":"r","pc_id":"PC1","exit_code":125,"skipped":true}`:     125,
		`{"request_id":"r","pc_id":"PC1","exit_code":3,"job_id":"e","x":[1]}`: 3,
	} {
		r, err := DecodeResult([]byte(in))
		if err != nil || r.ExitCode != want {
			t.Errorf("DecodeResult(%s) = exit %d, %v; want %d", in, r.ExitCode, err, want)
		}
	}
	// The method stays tolerant: only DecodeResult validates.
	var r ExecResult
	if err := json.Unmarshal([]byte(`{"request_id":"r","pc_id":"PC1","exit_code":4,"skipped":true}`), &r); err != nil || r.ExitCode != 4 || !r.Skipped {
		t.Errorf("json.Unmarshal: %+v %v", r, err)
	}
	if _, err := DecodeHeartbeat([]byte(`{"at":"2026-05-16T00:00:00Z"}`)); err == nil {
		t.Error("heartbeat without pc_id accepted")
	}
}

func TestLegacyResultID(t *testing.T) {
	a := LegacyResultID("req", "PC1")
	if a != LegacyResultID("req", "PC1") {
		t.Fatal("not deterministic")
	}
	if a == LegacyResultID("req", "PC2") {
		t.Fatal("pc_id ignored")
	}
	// Version 5 (SHA-1, name based).
	if a[14] != '5' {
		t.Fatalf("not a v5 uuid: %s", a)
	}
}

func TestSubjects(t *testing.T) {
	cases := map[string]string{
		CommandsGroup("g1"):            "commands.group.g1",
		CommandsPC("PC1"):              "commands.pc.PC1",
		Results("r"):                   "results.r",
		Started("e", "PC1"):            "events.started.e.PC1",
		HeartbeatSubject("PC1"):        "heartbeat.PC1",
		JobTail("PC1"):                 "job.tail.PC1",
		Kill("e"):                      "kill.e",
		Ping("PC1"):                    "agents.PC1.ping",
		OutputObjectKey("r", "stdout"): "r/stdout",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	if ValidToken("a.b") || ValidToken("") || ValidToken("a*") || !ValidToken("PC-01") {
		t.Error("ValidToken")
	}
}

// BenchmarkDecodeResult compares, side by side, decoding a result with 1 KiB
// of stdout through json.Unmarshal into *ExecResult (the payload is checked,
// then the method decodes it again) and through DecodeResult (two passes: the validity check and the decode).
//
//	go test -run '^$' -bench DecodeResult ./wire
func BenchmarkDecodeResult(b *testing.B) {
	exec := "6f1c2a9e-1d2b-4c3d-8e4f-5a6b7c8d9e0f"
	r := ExecResult{ResultID: "0d3c2b1a-0000-4000-8000-000000000001", RequestID: "req-1", PCID: "PC001",
		ExecID: &exec, ExitCode: 0, Stdout: strings.Repeat("all good, carry on. ", 52), StartedAt: time.Now(), FinishedAt: time.Now()}
	data, err := json.Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("unmarshal-via-method", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var r ExecResult
			if err := json.Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeResult", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := DecodeResult(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
