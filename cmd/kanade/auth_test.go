package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/services/accounts"
)

// call is one HTTP request with an optional bearer token.
func call(t *testing.T, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// want asserts a status (and, if given, a body substring).
func want(t *testing.T, what string, status int, body string, wantStatus int, wantBody ...string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s: status %d, want %d: %s", what, status, wantStatus, body)
	}
	for _, w := range wantBody {
		if !strings.Contains(body, w) {
			t.Fatalf("%s: body %q lacks %q", what, body, w)
		}
	}
}

type loginReply struct {
	Token        string `json:"token"`
	Role         string `json:"role"`
	MustChangePW bool   `json:"must_change_pw"`
	Exp          int64  `json:"exp"`
}

func login(t *testing.T, api, user, password string) loginReply {
	t.Helper()
	st, _, body := call(t, "POST", api+"/auth/login", "", `{"username":"`+user+`","password":"`+password+`"}`)
	want(t, "login "+user, st, body, 200)
	var r loginReply
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Token == "" {
		t.Fatalf("login %s: %q %v", user, body, err)
	}
	return r
}

// TestAccountsAndRoles runs the real binary with a bootstrap admin: login
// and the forced password change, accounts for a viewer and an operator,
// each tier on HTTP, a disabled account's token, the last-admin guard, the
// login throttle, and a second node sharing accounts and tokens.
func TestAccountsAndRoles(t *testing.T) {
	p := startKanade(t, t.TempDir(), "--bootstrap-admin-user", "root", "--bootstrap-admin-password", "first-pass-1")
	api := p.HTTP + "/api"

	// Once an account exists, nothing but the public routes answers without a token.
	st, _, body := call(t, "GET", api+"/results", "", "")
	want(t, "results without a token", st, body, 401, "missing bearer token")
	st, _, body = call(t, "GET", api+"/version", "", "")
	want(t, "version is public", st, body, 200)
	st, _, body = call(t, "POST", api+"/auth/forgot-password", "", `{"username":"root"}`)
	want(t, "forgot-password is public, and answers 200 even without mail", st, body, 200)
	st, _, body = call(t, "GET", api+"/auth/password-setup/00000000-0000-4000-8000-000000000000", "", "")
	want(t, "an unknown setup link", st, body, 404, "invalid link")
	st, _, body = call(t, "POST", api+"/auth/password-setup/not-a-token", "", `{"password":"long-enough-1"}`)
	want(t, "a malformed setup link", st, body, 404, "invalid link")

	admin := login(t, api, "root", "first-pass-1")
	if admin.Role != "admin" || !admin.MustChangePW || admin.Exp < time.Now().Add(23*time.Hour).Unix() {
		t.Fatalf("bootstrap login: %+v", admin)
	}
	st, _, body = call(t, "GET", api+"/auth/me", admin.Token, "")
	want(t, "me", st, body, 200, `"username":"root"`, `"must_change_pw":true`)
	st, _, body = call(t, "POST", api+"/auth/change-password", admin.Token, `{"old_password":"wrong-pass","new_password":"second-pass-2"}`)
	want(t, "change with a wrong old password", st, body, 401, "old password incorrect")
	st, _, body = call(t, "POST", api+"/auth/change-password", admin.Token, `{"old_password":"first-pass-1","new_password":"second-pass-2"}`)
	want(t, "change password", st, body, 204)
	admin = login(t, api, "root", "second-pass-2")
	if admin.MustChangePW {
		t.Fatal("must_change_pw still set after the change")
	}

	for _, u := range []string{`{"username":"vera","password":"viewer-pass","role":"viewer"}`, `{"username":"otto","password":"operator-pass","role":"operator"}`} {
		st, _, body = call(t, "POST", api+"/accounts", admin.Token, u)
		want(t, "create "+u, st, body, 201, `"setup_link_sent":false`)
	}
	st, _, body = call(t, "POST", api+"/accounts", admin.Token, `{"username":"vera","password":"viewer-pass","role":"viewer"}`)
	want(t, "duplicate", st, body, 409, "username already exists")
	st, _, body = call(t, "POST", api+"/accounts", admin.Token, `{"username":"mia","email":"mia@example.test","role":"viewer"}`)
	want(t, "email-only create without mail", st, body, 400, "[mail] not configured — set a password instead of emailing a setup link")
	st, _, body = call(t, "POST", api+"/accounts/vera/reset-link", admin.Token, "")
	want(t, "reset link without mail", st, body, 400, "[mail] not configured")
	st, _, body = call(t, "GET", api+"/accounts", admin.Token, "")
	want(t, "list", st, body, 200, `"username":"otto"`, `"username":"vera"`, `"disabled":0`)
	if strings.Contains(body, "argon2") {
		t.Fatalf("list shows hashes: %s", body)
	}

	viewer := login(t, api, "vera", "viewer-pass")
	operator := login(t, api, "otto", "operator-pass")
	st, _, body = call(t, "POST", api+"/accounts/vera/reset-link", operator.Token, "")
	want(t, "reset link is for admins", st, body, 403, "admin role required (caller is operator)")
	st, _, body = call(t, "GET", api+"/results", viewer.Token, "")
	want(t, "viewer reads results", st, body, 200)
	for _, c := range [][2]string{
		{"POST", "/exec/inventory"}, {"POST", "/jobs/inventory/kill"}, {"POST", "/jobs"},
	} {
		st, _, body = call(t, c[0], api+c[1], viewer.Token, `{"id":"x"}`)
		want(t, "viewer "+c[1], st, body, 403, "operator role required (caller is viewer)")
	}
	st, _, body = call(t, "GET", api+"/accounts", operator.Token, "")
	want(t, "operator lists accounts", st, body, 403, "admin role required (caller is operator)")
	st, _, body = call(t, "POST", api+"/exec/nosuchjob", operator.Token, `{"target":{"all":true}}`)
	want(t, "operator exec passes the tier", st, body, 404)

	// The last enabled admin stays.
	st, _, body = call(t, "PATCH", api+"/accounts/root", admin.Token, `{"role":"viewer"}`)
	want(t, "demote last admin", st, body, 409, "cannot demote the last enabled admin")
	st, _, body = call(t, "DELETE", api+"/accounts/root", admin.Token, "")
	want(t, "delete last admin", st, body, 409, "cannot delete the last enabled admin")

	// A second node on the same NATS shares accounts and the token secret.
	p2 := startKanade(t, t.TempDir(), "--nats-url", p.NATS, "--services", "gateway", "--node-name", "second")
	st, _, body = call(t, "GET", p2.HTTP+"/api/auth/me", operator.Token, "")
	want(t, "node 1's token on node 2", st, body, 200, `"username":"otto"`)

	// Disabling ends the account's tokens on its next request, on every node.
	st, _, body = call(t, "PATCH", api+"/accounts/otto", admin.Token, `{"disabled":true}`)
	want(t, "disable", st, body, 204)
	st, _, body = call(t, "GET", api+"/results", operator.Token, "")
	want(t, "disabled token", st, body, 401, "account disabled")
	st, _, body = call(t, "GET", p2.HTTP+"/api/results", operator.Token, "")
	want(t, "disabled token on node 2", st, body, 401, "account disabled")

	// Page features: a group of pages, an account in it sees those only.
	st, _, body = call(t, "POST", api+"/permission-groups", admin.Token, `{"name":"lite","features":["nope"]}`)
	want(t, "unknown feature", st, body, 400, "unknown feature: nope")
	st, _, body = call(t, "POST", api+"/permission-groups", admin.Token, `{"name":"lite","features":["activity","activity"]}`)
	want(t, "create group", st, body, 201)
	st, _, body = call(t, "POST", api+"/accounts", admin.Token, `{"username":"fay","password":"fay-pass-1","role":"operator","permission_group":"lite"}`)
	want(t, "create restricted", st, body, 201)
	fay := login(t, api, "fay", "fay-pass-1")
	st, _, body = call(t, "GET", api+"/auth/me", fay.Token, "")
	want(t, "restricted me", st, body, 200, `"allowed_features":["activity"]`)
	st, _, body = call(t, "GET", api+"/results", fay.Token, "")
	want(t, "restricted reads results", st, body, 200)
	st, _, body = call(t, "GET", api+"/jobs", fay.Token, "")
	want(t, "restricted jobs", st, body, 403, "account not permitted to access this page (requires jobs)")
	st, _, body = call(t, "DELETE", api+"/permission-groups/lite", admin.Token, "")
	want(t, "delete a group with members", st, body, 409, "group still has member(s)")
	st, _, body = call(t, "GET", api+"/permission-groups", admin.Token, "")
	want(t, "groups", st, body, 200, `"member_count":1`)

	// The host's admin command sets a password: the account is enabled
	// again and must change it.
	cmd := exec.Command(binary(t), "admin", "reset-password", "--user", "otto", "--nats-url", p.NATS)
	cmd.Env = append(os.Environ(), "KANADE_NEW_PASSWORD=reset-pass-3")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kanade admin: %v\n%s", err, out)
	}
	if r := login(t, api, "otto", "reset-pass-3"); !r.MustChangePW {
		t.Fatalf("after admin reset: %+v", r)
	}
	// … and left its record, by the host's user, the password not in it.
	st, _, body = call(t, "GET", api+"/audit?action=account.update&target=otto", admin.Token, "")
	want(t, "the host's reset on the trail", st, body, 200, `"actor":"cli:`, `"via":"kanade admin reset-password"`)
	if strings.Contains(body, "reset-pass-3") {
		t.Fatalf("the password reached the trail: %s", body)
	}

	// TOTP: init offers a secret, verify stores it, login then asks for a code.
	st, _, body = call(t, "POST", api+"/auth/mfa/init", admin.Token, "")
	want(t, "mfa init", st, body, 200, "otpauth://totp/kanade:root")
	var mfa struct{ Secret string }
	json.Unmarshal([]byte(body), &mfa)
	code, err := accounts.TOTPCode(mfa.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, _, body = call(t, "POST", api+"/auth/mfa/verify", admin.Token, `{"secret":"`+mfa.Secret+`","code":"000000x"}`)
	want(t, "mfa verify with a wrong code", st, body, 400, "invalid code")
	st, _, body = call(t, "POST", api+"/auth/mfa/verify", admin.Token, `{"secret":"`+mfa.Secret+`","code":"`+code+`"}`)
	want(t, "mfa verify", st, body, 204)
	st, _, body = call(t, "POST", api+"/auth/login", "", `{"username":"root","password":"second-pass-2"}`)
	want(t, "login without a code", st, body, 200, `{"mfa_required":true}`)
	st, _, body = call(t, "POST", api+"/auth/login", "", `{"username":"root","password":"second-pass-2","totp_code":"`+code+`"}`)
	want(t, "login with the code", st, body, 200, `"token":`)

	// Five failures lock the username; the sixth try is a 429.
	for i := range 5 {
		st, _, body = call(t, "POST", api+"/auth/login", "", `{"username":"vera","password":"bad-guess"}`)
		want(t, fmt.Sprint("bad login ", i), st, body, 401, "invalid credentials")
	}
	st, hdr, body := call(t, "POST", api+"/auth/login", "", `{"username":"vera","password":"viewer-pass"}`)
	want(t, "locked login", st, body, 429, "too many login attempts; try again later")
	if ra := hdr.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After %q", ra)
	}
}

// TestAuditTrail runs the real binary: an operator's exec is in GET
// /api/audit with its actor and target, a viewer's refused exec is not,
// the chain verifies, and a record removed and forged in the stream is
// reported.
func TestAuditTrail(t *testing.T) {
	p := startKanade(t, t.TempDir(), "--bootstrap-admin-password", "first-pass-1")
	api := p.HTTP + "/api"
	admin := login(t, api, "admin", "first-pass-1")
	for _, u := range []string{`{"username":"vera","password":"viewer-pass","role":"viewer"}`, `{"username":"otto","password":"operator-pass","role":"operator"}`} {
		st, _, body := call(t, "POST", api+"/accounts", admin.Token, u)
		want(t, "create", st, body, 201)
	}
	viewer, operator := login(t, api, "vera", "viewer-pass"), login(t, api, "otto", "operator-pass")
	st, _, body := call(t, "POST", api+"/jobs", operator.Token, `{"id":"inventory","version":"1.0.0","execute":{"shell":"sh","script":"true","timeout":"30s"}}`)
	want(t, "put job", st, body, 200)
	st, _, body = call(t, "POST", api+"/exec/inventory", viewer.Token, `{"target":{"all":true}}`)
	want(t, "viewer exec", st, body, 403)
	st, _, body = call(t, "POST", api+"/exec/inventory", operator.Token, `{"target":{"all":true},"password":"not-for-the-trail"}`)
	want(t, "operator exec", st, body, 200, "exec_id")

	var rows []struct {
		ID      int64           `json:"id"`
		Actor   string          `json:"actor"`
		Action  string          `json:"action"`
		Target  *string         `json:"target"`
		Addr    *string         `json:"addr"`
		Payload json.RawMessage `json:"payload"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, _, body = call(t, "GET", api+"/audit?action=^exec$", viewer.Token, "")
		want(t, "audit list", st, body, 200)
		rows = nil
		json.Unmarshal([]byte(body), &rows)
		if len(rows) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(rows) != 1 || rows[0].Actor != "otto" || rows[0].Target == nil || *rows[0].Target != "inventory" ||
		rows[0].Addr == nil || *rows[0].Addr != "127.0.0.1" {
		t.Fatalf("exec records: %s", body)
	}
	if strings.Contains(string(rows[0].Payload), "not-for-the-trail") || !strings.Contains(string(rows[0].Payload), `"password":"***"`) {
		t.Fatalf("payload not redacted: %s", rows[0].Payload)
	}
	// Logins, account changes and the job put are there too, newest first,
	// and the cursor pages on.
	st, _, body = call(t, "GET", api+"/audit?limit=2", admin.Token, "")
	want(t, "page 1", st, body, 200)
	var page []struct{ ID int64 }
	json.Unmarshal([]byte(body), &page)
	if len(page) != 2 || page[0].ID <= page[1].ID {
		t.Fatalf("page 1: %s", body)
	}
	st, _, body = call(t, "GET", api+fmt.Sprintf("/audit?limit=100&before=%d", page[1].ID), admin.Token, "")
	want(t, "page 2", st, body, 200, `"action":"account.create"`, `"action":"auth.login"`)
	if strings.Contains(body, `"id":`+fmt.Sprint(page[1].ID)+",") {
		t.Fatalf("page 2 repeats the cursor row: %s", body)
	}

	st, _, body = call(t, "GET", api+"/audit/verify", viewer.Token, "")
	want(t, "verify", st, body, 200, `"ok":true`)
	// The execution names who ran it, too.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, _, body = call(t, "GET", api+"/executions?limit=5", viewer.Token, "")
		if strings.Contains(body, `"initiated_by":"otto"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no execution initiated by otto: %s", body)
		}
	}

	// Remove record 2 and put an altered copy back: both show.
	nc, err := nats.Connect(p.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), "AUDIT")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(m.Data), `"actor":"admin"`, `"actor":"nobody"`, 1)
	if _, err := js.Publish(context.Background(), m.Subject, []byte(forged)); err != nil {
		t.Fatal(err)
	}
	st, _, body = call(t, "GET", api+"/audit/verify", viewer.Token, "")
	want(t, "verify after tampering", st, body, 200, `"ok":false`, "records 2..2 are missing", "does not link to record")
}

// TestNATSRoles runs the real binary under the configuration `kanade
// nats-users --viewers vic --operators ophelia` writes, whose rights come
// from the same endpoint definitions as the gateway's tiers: the viewer
// reads results and is refused exec, kill and job put; the operator puts a
// job and runs it, which the audit trail records as "nats:ophelia" though
// the requests named admin, and is refused the accounts and JetStream.
func TestNATSRoles(t *testing.T) {
	conf, err := exec.Command(binary(t), "nats-users", "--viewers", "vic", "--operators", "ophelia").Output()
	if err != nil {
		t.Fatalf("nats-users: %v", err)
	}
	path := filepath.Join(t.TempDir(), "roles.conf")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	user := func(name string) natsauth.User {
		m := regexp.MustCompile(`\{user: "` + name + `", password: "([0-9a-f]+)"`).FindSubmatch(conf)
		if m == nil {
			t.Fatalf("no user %s in:\n%s", name, conf)
		}
		return natsauth.User{Name: name, Password: string(m[1])}
	}
	viewers, operators := []natsauth.User{user("vic")}, []natsauth.User{user("ophelia")}
	p := startKanade(t, t.TempDir(), "--nats-config", path, "--bootstrap-admin-password", "first-pass-1")
	// The server refuses a publish asynchronously: the request times
	// out and the connection's error handler hears why.
	violations := make(chan string, 10)
	connect := func(u natsauth.User, opts ...nats.Option) *nats.Conn {
		nc, err := nats.Connect(p.NATS, append(opts, nats.UserInfo(u.Name, u.Password),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				if errors.Is(err, nats.ErrPermissionViolation) {
					violations <- u.Name + " " + err.Error()
				}
			}))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	// Alone in its account, a caller may use plain _INBOX replies; the old
	// prefix still works.
	viewer, operator := connect(viewers[0]), connect(operators[0], nats.CustomInboxPrefix(natsauth.RoleInboxPrefix))
	if r := natsCall(t, viewer, "kanade.results.list", `{"limit":1}`, nil); r.status != 200 {
		t.Fatalf("viewer results over NATS: %+v", r)
	}
	refused := func(nc *nats.Conn, subject, body string) {
		t.Helper()
		if _, err := nc.Request(subject, []byte(body), 300*time.Millisecond); err == nil {
			t.Fatalf("%s answered", subject)
		}
		select {
		case v := <-violations:
			if !strings.Contains(v, `Publish to "`+subject+`"`) {
				t.Fatalf("%s: violation %q", subject, v)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no permissions violation", subject)
		}
	}
	// Discovery crosses the import too, every service answering one
	// request (`nats micro ls` as a caller).
	inbox := viewer.NewRespInbox()
	infos, err := viewer.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := viewer.PublishRequest("$SRV.INFO", inbox, nil); err != nil {
		t.Fatal(err)
	}
	var answers int
	var sawResults bool
	for {
		m, err := infos.NextMsg(2 * time.Second)
		if err != nil {
			break
		}
		answers++
		sawResults = sawResults || strings.Contains(string(m.Data), `"kanade.results.list"`)
	}
	if answers < 2 || !sawResults {
		t.Fatalf("viewer's $SRV.INFO: %d answers, results among them %v", answers, sawResults)
	}
	refused(viewer, "kanade.jobs.exec", `{"job_id":"inventory","target":{"all":true}}`)
	refused(viewer, "kanade.jobs.kill", `{"job_id":"inventory"}`)
	refused(viewer, "kanade.jobs.put", `{"id":"x"}`)
	refused(operator, "kanade.accounts.list", `{}`)
	refused(operator, "$JS.API.STREAM.INFO.RESULTS", ``)
	// The requests name someone else, in both ways a caller might try;
	// the server's stamp wins.
	impostor := nats.Header{}
	impostor.Set("Kanade-Actor", "admin")
	impostor.Set("Nats-Request-Info", `{"acc":"KANADE","user":"admin"}`)
	if r := natsCall(t, operator, "kanade.jobs.put", `{"id":"inventory","version":"1.0.0","execute":{"shell":"sh","script":"true","timeout":"30s"}}`, impostor); r.status != 200 {
		t.Fatalf("operator job put over NATS: %+v", r)
	}
	if r := natsCall(t, operator, "kanade.jobs.exec", `{"job_id":"inventory","target":{"all":true}}`, impostor); r.status >= 500 {
		t.Fatalf("operator exec over NATS: %+v", r)
	}
	admin := login(t, p.HTTP+"/api", "admin", "first-pass-1")
	for _, action := range []string{"job_upsert", "exec"} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, _, body := call(t, "GET", p.HTTP+"/api/audit?action="+action, admin.Token, "")
			if strings.Contains(body, `"actor":"nats:ophelia"`) && strings.Contains(body, `"target":"inventory"`) {
				if strings.Contains(body, `"actor":"admin"`) {
					t.Fatalf("the %s record names the impostor's actor: %s", action, body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s by nats:ophelia in the trail: %s", action, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
