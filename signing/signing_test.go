package signing

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/wire"
)

// The test vector of the spec (auth-audit-signing.md §3.8), computed from a
// dummy seed of 32 bytes 0x01.
const (
	vecSeed        = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	vecPublic      = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
	vecFingerprint = "34750f98bd59fcfc"
	vecBody        = `{"id":"job","request_id":"r1"}`
	vecAt          = "1700000000000"
	vecSig         = "4rAfenyM9RnwEpeVMRVsQf6WX8GICKbYcP5PuMz1VmIrOc3ENKAIsc9ifNoX8Sigqa/BsIfU0FPhrIk/yJZ8Dg=="
	vecKid         = "backend-1"
	vecRing        = `[{"kid":"backend-1","public_key":"iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=","label":"backend"}]`
)

func vectorSigner(t *testing.T) *Signer {
	t.Helper()
	s, err := Config{Key: vecSeed, Kid: vecKid}.Load()
	if err != nil || s == nil {
		t.Fatalf("load the vector's key: %v", err)
	}
	return s
}

func TestVector(t *testing.T) {
	s := vectorSigner(t)
	if s.PublicKey() != vecPublic || s.Fingerprint() != vecFingerprint || s.Kid() != vecKid {
		t.Fatalf("public %s fingerprint %s kid %s", s.PublicKey(), s.Fingerprint(), s.Kid())
	}
	ring, _ := json.Marshal([]KeyringEntry{s.KeyringEntry()})
	if string(ring) != vecRing {
		t.Fatalf("ring entry %s\nwant %s", ring, vecRing)
	}
	if got := signedBytes(1700000000000, nil); !bytes.Equal(got, []byte{0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00}) {
		t.Fatalf("prefix % x", got)
	}
	m := &nats.Msg{Subject: "commands.all", Data: []byte(vecBody)}
	if err := s.SignAt(m, time.UnixMilli(1700000000000)); err != nil {
		t.Fatal(err)
	}
	want := nats.Header{HeaderSig: {vecSig}, HeaderKid: {vecKid}, HeaderAlg: {Alg}, HeaderAt: {vecAt}}
	if len(m.Header) != len(want) {
		t.Fatalf("headers %v", m.Header)
	}
	for k, v := range want {
		if got := m.Header[k]; len(got) != 1 || got[0] != v[0] {
			t.Errorf("%s = %v, want %s", k, got, v[0])
		}
	}
	if string(m.Data) != vecBody {
		t.Fatalf("body changed: %s", m.Data)
	}
	kr, err := ParseKeyring([]byte(vecRing))
	if err != nil {
		t.Fatal(err)
	}
	if v := kr.Verify(m.Header, m.Data, time.Now()); v.Outcome != OK {
		t.Fatalf("the vector does not verify: %+v", v)
	}
	if got := kr.CommandKeys(); len(got) != 1 || got[0] != vecKid+":"+vecFingerprint {
		t.Fatalf("command_keys %v", got)
	}
}

func TestNilSignerSignsNothing(t *testing.T) {
	var s *Signer
	m := &nats.Msg{Subject: "commands.all", Data: []byte(vecBody)}
	if err := s.Sign(m); err != nil || m.Header != nil {
		t.Fatalf("nil signer: %v %v", err, m.Header)
	}
	if s.Kid() != "" || s.Fingerprint() != "" || s.PublicKey() != "" {
		t.Fatal("nil signer has a key")
	}
}

func TestConfigLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte(vecSeed+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, tc := range []struct {
		name    string
		c       Config
		signing bool
		err     string
	}{
		{"nothing", Config{}, false, ""},
		{"blank kid alone is nothing", Config{Kid: "  "}, false, ""},
		{"key and kid", Config{Key: vecSeed, Kid: " backend-1 "}, true, ""},
		{"key file and kid", Config{KeyFile: file, Kid: vecKid}, true, ""},
		{"key alone", Config{Key: vecSeed}, false, "KANADE_COMMAND_SIGNING_KID is not"},
		{"key file alone", Config{KeyFile: file}, false, "KANADE_COMMAND_SIGNING_KID is not"},
		{"kid alone", Config{Kid: vecKid}, false, "set both or neither"},
		{"key and key file", Config{Key: vecSeed, KeyFile: file, Kid: vecKid}, false, "not both"},
		{"missing file", Config{KeyFile: filepath.Join(dir, "nope"), Kid: vecKid}, false, "no such file"},
		{"empty file", Config{KeyFile: empty, Kid: vecKid}, false, "is empty"},
		{"not base64", Config{Key: "not base64!", Kid: vecKid}, false, "not base64"},
		{"unpadded", Config{Key: strings.TrimRight(vecSeed, "="), Kid: vecKid}, false, "not base64"},
		{"64-byte Go private key", Config{Key: base64.StdEncoding.EncodeToString(make([]byte, 64)), Kid: vecKid}, false, "32-byte"},
		{"kid with a newline", Config{Key: vecSeed, Kid: "a\nb"}, false, "printable ASCII"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.c.Load()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (s != nil) != tc.signing {
				t.Fatalf("signer %v, want signing=%v", s, tc.signing)
			}
			if s != nil && (s.Kid() != vecKid || s.PublicKey() != vecPublic) {
				t.Fatalf("kid %q public %s", s.Kid(), s.PublicKey())
			}
		})
	}
}

func TestGenerate(t *testing.T) {
	s, seed, err := Generate(DefaultKid(time.Date(2026, 7, 28, 10, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	if s.Kid() != "backend-20260728" || len(seed) != 44 {
		t.Fatalf("kid %s seed %q", s.Kid(), seed)
	}
	again, err := Config{Key: seed, Kid: s.Kid()}.Load()
	if err != nil || again.PublicKey() != s.PublicKey() {
		t.Fatalf("the printed seed does not load back to the same key: %v", err)
	}
}

func TestKeyringRejects(t *testing.T) {
	offCurve := make([]byte, 32)
	offCurve[0] = 2 // y = 2 has no x on Ed25519
	for name, ring := range map[string]string{
		"not an array": `{"kid":"a"}`,
		"repeated kid": `[{"kid":"a","public_key":"` + vecPublic + `"},{"kid":"a","public_key":"` + vecPublic + `"}]`,
		"bad base64":   `[{"kid":"a","public_key":"!!"}]`,
		"short key":    `[{"kid":"a","public_key":"AQID"}]`,
		"line break":   `[{"kid":"a","public_key":"` + vecPublic[:20] + `\n` + vecPublic[20:] + `"}]`,
		"not a point":  `[{"kid":"a","public_key":"` + base64.StdEncoding.EncodeToString(offCurve) + `"}]`,
		"empty kid":    `[{"kid":"","public_key":"` + vecPublic + `"}]`,
	} {
		if _, err := ParseKeyring([]byte(ring)); err == nil {
			t.Errorf("%s: accepted %s", name, ring)
		}
	}
	// Real keys are points: many random ones all pass.
	for range 50 {
		s, _, _ := Generate("k")
		if _, err := NewKeyring([]KeyringEntry{s.KeyringEntry()}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyOutcomes(t *testing.T) {
	s := vectorSigner(t)
	kr, _ := ParseKeyring([]byte(vecRing))
	now := time.Now()
	signed := func() *nats.Msg {
		m := &nats.Msg{Data: []byte(vecBody)}
		s.SignAt(m, now)
		return m
	}
	other, _, _ := Generate(vecKid) // same kid, another key
	forged := &nats.Msg{Data: []byte(vecBody)}
	other.SignAt(forged, now)
	renamed, _, _ := Generate("backend-2")
	unknown := &nats.Msg{Data: []byte(vecBody)}
	renamed.SignAt(unknown, now)

	cases := map[string]struct {
		m    *nats.Msg
		edit func(*nats.Msg)
		want Outcome
	}{
		"good":               {signed(), nil, OK},
		"no header at all":   {&nats.Msg{Data: []byte(vecBody)}, nil, Absent},
		"other headers only": {&nats.Msg{Data: []byte(vecBody), Header: nats.Header{"Nats-Msg-Id": {"x"}}}, nil, Absent},
		"tampered body":      {signed(), func(m *nats.Msg) { m.Data = []byte(`{"id":"job","request_id":"r2"}`) }, Invalid},
		"tampered at":        {signed(), func(m *nats.Msg) { m.Header.Set(HeaderAt, "1") }, Invalid},
		"other key same kid": {forged, nil, Invalid},
		"unknown kid":        {unknown, nil, UnknownKey},
		"wrong kid":          {signed(), func(m *nats.Msg) { m.Header.Set(HeaderKid, "backend-0") }, UnknownKey},
		"no kid":             {signed(), func(m *nats.Msg) { m.Header.Del(HeaderKid) }, Invalid},
		"kid only":           {&nats.Msg{Data: []byte(vecBody), Header: nats.Header{HeaderKid: {vecKid}}}, nil, Invalid},
		"no alg is fine":     {signed(), func(m *nats.Msg) { m.Header.Del(HeaderAlg) }, OK},
		"other alg":          {signed(), func(m *nats.Msg) { m.Header.Set(HeaderAlg, "rsa") }, Invalid},
		"unpadded sig":       {signed(), func(m *nats.Msg) { m.Header.Set(HeaderSig, strings.TrimRight(m.Header.Get(HeaderSig), "=")) }, Invalid},
		"unknown sig header": {&nats.Msg{Data: []byte(vecBody), Header: nats.Header{"Kanade-Sig-Foo": {"1"}}}, nil, Invalid},
	}
	for name, tc := range cases {
		if tc.edit != nil {
			tc.edit(tc.m)
		}
		if v := kr.Verify(tc.m.Header, tc.m.Data, now); v.Outcome != tc.want {
			t.Errorf("%s: %s (%s), want %s", name, v.Outcome, v.Detail, tc.want)
		}
	}
	if v := (&Keyring{}).Verify(signed().Header, []byte(vecBody), now); v.Outcome != Unprovisioned {
		t.Errorf("empty ring: %s", v.Outcome)
	}
	// A week-old Command signed by the backend's key still verifies (no
	// freshness bound); a break-glass key's does not.
	old := &nats.Msg{Data: []byte(vecBody)}
	s.SignAt(old, now.Add(-7*24*time.Hour))
	if v := kr.Verify(old.Header, old.Data, now); v.Outcome != OK {
		t.Errorf("week-old backend signature: %s", v.Outcome)
	}
	age := int64(300)
	bg, _ := NewKeyring([]KeyringEntry{{Kid: vecKid, PublicKey: vecPublic, MaxAgeSecs: &age}})
	if v := bg.Verify(old.Header, old.Data, now); v.Outcome != Stale {
		t.Errorf("week-old break-glass signature: %s", v.Outcome)
	}
	if v := bg.Verify(signed().Header, []byte(vecBody), now); v.Outcome != OK {
		t.Errorf("fresh break-glass signature: %s", v.Outcome)
	}
}

func TestEnvelope(t *testing.T) {
	s := vectorSigner(t)
	kr, _ := ParseKeyring([]byte(vecRing))
	now := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	cmd := []byte(`{"id":"job","version":"1","request_id":"r1","exec_id":"e1","shell":"sh","script":"true","timeout_secs":5,"jitter_secs":null,"run_as":"system","staleness":{"mode":"cached"}}`)
	body, err := NewEnvelope("PC001", now.Add(24*time.Hour), cmd)
	if err != nil {
		t.Fatal(err)
	}
	wantPrefix := `{"kind":"kanade.command.v2","target_pc_id":"PC001","expires_at":"2026-10-02T00:00:00Z","command":{"id":"job"`
	if !strings.HasPrefix(string(body), wantPrefix) || !IsEnvelope(body) || IsEnvelope(cmd) {
		t.Fatalf("envelope %s", body)
	}
	check := func(body []byte, pc string, at, now time.Time) Verdict {
		m := &nats.Msg{Data: body}
		s.SignAt(m, at)
		_, v := CheckEnvelope(kr.Verify(m.Header, m.Data, now), m.Data, pc, now)
		return v
	}
	if got, v := CheckEnvelope(kr.Verify(nil, body, now), body, "PC001", now); v.Outcome != Absent || got != nil {
		t.Fatalf("unsigned envelope: %s", v.Outcome)
	}
	m := &nats.Msg{Data: body}
	s.SignAt(m, now)
	inner, v := CheckEnvelope(kr.Verify(m.Header, m.Data, now), m.Data, "PC001", now)
	var c wire.Command
	if v.Outcome != OK || json.Unmarshal(inner, &c) != nil || c.RequestID != "r1" {
		t.Fatalf("good envelope: %s %s", v.Outcome, v.Detail)
	}
	deadline := now.Add(time.Hour)
	withDeadline, _ := NewEnvelope("PC001", now.Add(24*time.Hour), []byte(strings.Replace(string(cmd), `"id":"job"`, `"id":"job","deadline_at":"`+deadline.Format(time.RFC3339)+`"`, 1)))
	long, _ := NewEnvelope("PC001", now.Add(8*24*time.Hour), cmd)
	for name, tc := range map[string]struct {
		body    []byte
		pc      string
		at, now time.Time
		want    Outcome
	}{
		"re-targeted":       {body, "PC002", now, now, Misaddressed},
		"case differs":      {body, "pc001", now, now, Misaddressed},
		"expired":           {body, "PC001", now, now.Add(25 * time.Hour), Expired},
		"at the expiry":     {body, "PC001", now, now.Add(24 * time.Hour), OK},
		"deadline first":    {withDeadline, "PC001", now, now.Add(2 * time.Hour), Expired},
		"signed far ahead":  {body, "PC001", now, now.Add(-2 * time.Hour), ClockAhead},
		"expires before at": {body, "PC001", now.Add(25 * time.Hour), now.Add(25 * time.Hour), EnvelopeRejected},
		"valid too long":    {long, "PC001", now, now, EnvelopeRejected},
		"unknown key":       {[]byte(strings.Replace(string(body), `{"kind"`, `{"x":1,"kind"`, 1)), "PC001", now, now, EnvelopeRejected},
		"other kind":        {[]byte(strings.Replace(string(body), KindV2, "kanade.command.v3", 1)), "PC001", now, now, EnvelopeRejected},
		"null kind":         {[]byte(strings.Replace(string(body), `"`+KindV2+`"`, "null", 1)), "PC001", now, now, EnvelopeRejected},
		"key in capitals":   {[]byte(strings.Replace(string(body), `"target_pc_id"`, `"TARGET_PC_ID"`, 1)), "PC001", now, now, EnvelopeRejected},
		"key twice":         {[]byte(strings.Replace(string(body), `{"kind"`, `{"target_pc_id":"PC002","kind"`, 1)), "PC001", now, now, EnvelopeRejected},
		"trailing data":     {append(append([]byte{}, body...), []byte(` {}`)...), "PC001", now, now, EnvelopeRejected},
	} {
		if v := check(tc.body, tc.pc, tc.at, tc.now); v.Outcome != tc.want {
			t.Errorf("%s: %s (%s), want %s", name, v.Outcome, v.Detail, tc.want)
		}
	}
}

func TestEnvelopesBody(t *testing.T) {
	e, err := NewEnvelopes(0)
	if err != nil || e.TTL != DefaultEnvelopeTTL {
		t.Fatal(err)
	}
	if _, err := NewEnvelopes(8 * 24 * time.Hour); err == nil {
		t.Fatal("a TTL over 7 days was accepted")
	}
	cmd := []byte(vecBody)
	now := time.Now()
	e.Observe(wire.Heartbeat{PCID: "PC1", CommandProtocols: []string{ProtocolLegacy, KindV2}})
	e.Observe(wire.Heartbeat{PCID: "PC2", CommandProtocols: []string{ProtocolLegacy}})
	for subject, envelope := range map[string]bool{
		"commands.pc.PC1": true, "commands.pc.PC2": false, "commands.pc.PC3": false,
		"commands.all": false, "commands.group.PC1": false,
	} {
		b, err := e.Body(subject, cmd, now)
		if err != nil || IsEnvelope(b) != envelope {
			t.Errorf("%s: %s (%v)", subject, b, err)
		}
	}
	// An agent downgraded to one without v2 gets bare Commands again.
	e.Observe(wire.Heartbeat{PCID: "PC1"})
	if b, _ := e.Body("commands.pc.PC1", cmd, now); IsEnvelope(b) {
		t.Error("envelope after a heartbeat without v2")
	}
	var off *Envelopes
	if b, _ := off.Body("commands.pc.PC1", cmd, now); !bytes.Equal(b, cmd) {
		t.Error("nil Envelopes changed the body")
	}
}

func TestRefusal(t *testing.T) {
	exec := "e1"
	cmd := wire.Command{ID: "job", RequestID: "r1", ExecID: &exec}
	r := Refusal(cmd, "PC1", Verdict{Outcome: Absent}, time.Now())
	if !IsRefusal(r) || r.ExitCode != 123 || r.Skipped || r.Stdout != "" || !strings.HasPrefix(r.Stderr, "refused: command carried no signature, and this host requires one.") ||
		*r.ManifestID != "job" || *r.ExecID != "e1" || !r.StartedAt.Equal(r.FinishedAt) {
		t.Fatalf("%+v", r)
	}
	if r.ResultID != RefusalResultID("r1", "PC1") || r.ResultID == RefusalResultID("r1", "PC2") {
		t.Fatal("result id not derived per request and pc")
	}
	r.ResultID = "other"
	if IsRefusal(r) {
		t.Fatal("an exit 123 with another result_id counted as a refusal")
	}
}

// BenchmarkSign is the cost the publish path adds per subject (a 1 KiB
// Command), and BenchmarkVerify what an agent spends per Command.
func BenchmarkSign(b *testing.B) {
	s, _, _ := Generate("bench")
	body := bytes.Repeat([]byte("x"), 1024)
	for b.Loop() {
		s.Sign(&nats.Msg{Data: body})
	}
}

func BenchmarkVerify(b *testing.B) {
	s, _, _ := Generate("bench")
	kr, _ := NewKeyring([]KeyringEntry{s.KeyringEntry()})
	m := &nats.Msg{Data: bytes.Repeat([]byte("x"), 1024)}
	s.Sign(m)
	now := time.Now()
	for b.Loop() {
		if kr.Verify(m.Header, m.Data, now).Outcome != OK {
			b.Fatal("does not verify")
		}
	}
}
