package accounts

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
)

// smtpRelay is a test SMTP relay whose messages come on the channel.
func smtpRelay(t *testing.T) (string, <-chan nodetest.Mail) {
	t.Helper()
	got := make(chan nodetest.Mail, 16)
	return nodetest.SMTP(t, func(m nodetest.Mail) { got <- m }), got
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func statusOf(err error) int {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

var linkRE = regexp.MustCompile(`http://kanade\.test/password-setup/([0-9a-f-]{36})`)

// receive waits for the next mail and returns it with the token of its link.
func receive(t *testing.T, got <-chan nodetest.Mail) (nodetest.Mail, string) {
	t.Helper()
	select {
	case m := <-got:
		sub := linkRE.FindStringSubmatch(m.Data)
		if sub == nil {
			t.Fatalf("no link in the mail:\n%s", m.Data)
		}
		return m, sub[1]
	case <-time.After(30 * time.Second):
		t.Fatal("no mail arrived")
	}
	return nodetest.Mail{}, ""
}

func startWithMail(t *testing.T, n *nodetest.Node, addr string, c *clock) *Service {
	t.Helper()
	o := Options{Conn: n.Conn(t), Replicas: 1, Now: c.now, PublicURL: "http://kanade.test/",
		BootstrapUser: "admin", BootstrapPassword: "first-password"}
	if addr != "" {
		o.Mail = &Mail{Addr: addr, From: "kanade@example.test"}
	}
	r, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
	return r.Svc
}

// An email-only account gets a setup link by mail; the link sets the
// password once, a second use is 410, and only its hash is stored.
func TestSetupLinkByMail(t *testing.T) {
	n := nodetest.Start(t)
	addr, got := smtpRelay(t)
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	s := startWithMail(t, n, addr, c)
	ctx := context.Background()

	email := "carol@example.test"
	res, err := s.Create(ctx, CreateRequest{Username: "carol", Role: "operator", Email: &email})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.(api.Reply); r.Status != 201 || !r.Body.(map[string]bool)["setup_link_sent"] {
		t.Fatalf("create: %+v", r)
	}
	m, token := receive(t, got)
	if m.To != "<carol@example.test>" || !strings.Contains(m.Data, "パスワードを設定") || !strings.Contains(m.Data, "Set its password") ||
		!strings.Contains(m.Data, "2026-03-04 09:00 UTC") {
		t.Fatalf("mail:\nto %s\n%s", m.To, m.Data)
	}

	// The token itself is nowhere in the bucket; its SHA-256 is.
	js, _ := jetstream.New(n.Conn(t))
	kv, _ := js.KeyValue(ctx, Bucket)
	if _, err := kv.Get(ctx, keySetupPrefix+hashToken(token)); err != nil {
		t.Fatalf("hashed token not stored: %v", err)
	}
	keys, _ := kv.Keys(ctx)
	for _, k := range keys {
		e, _ := kv.Get(ctx, k)
		if strings.Contains(k, token) || (e != nil && strings.Contains(string(e.Value()), token)) {
			t.Fatalf("the raw token is stored under %s", k)
		}
	}

	info, err := s.SetupInfo(ctx, token)
	if err != nil || info["username"] != "carol" || info["purpose"] != "setup" {
		t.Fatalf("info: %v %v", info, err)
	}
	if err := s.SetupPassword(ctx, token, "short", ""); statusOf(err) != 400 || err.Error() != "password too short (min 8 chars)" {
		t.Fatalf("short password: %v", err)
	}
	if _, err := s.SetupInfo(ctx, "00000000-0000-4000-8000-000000000000"); statusOf(err) != 404 || err.Error() != "invalid link" {
		t.Fatalf("unknown token: %v", err)
	}
	if _, err := s.SetupInfo(ctx, "../../users"); statusOf(err) != 404 {
		t.Fatalf("malformed token: %v", err)
	}
	if err := s.SetupPassword(ctx, token, "carols-password", ""); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Login(ctx, LoginRequest{Username: "carol", Password: "carols-password"}, "127.0.0.1"); err != nil || r.(LoginReply).MustChangePW {
		t.Fatalf("login with the new password: %v %+v", err, r)
	}
	if err := s.SetupPassword(ctx, token, "another-password", ""); statusOf(err) != 410 {
		t.Fatalf("second use: %v", err)
	}
	if _, err := s.SetupInfo(ctx, token); statusOf(err) != 410 {
		t.Fatalf("info after use: %v", err)
	}
}

// A reset link expires after 72 hours; a newer link replaces an older one;
// two nodes racing on one link set one password.
func TestResetLinkExpiresAndIsOnePerUser(t *testing.T) {
	n := nodetest.Start(t)
	addr, got := smtpRelay(t)
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	s := startWithMail(t, n, addr, c)
	other := startWithMail(t, n, addr, c) // a second node on the same bucket
	ctx := context.Background()
	email, pw := "dave@example.test", "daves-password"
	if _, err := s.Create(ctx, CreateRequest{Username: "dave", Role: "viewer", Email: &email, Password: &pw}); err != nil {
		t.Fatal(err)
	}
	if err := s.ResetLink(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	m, first := receive(t, got)
	if !strings.Contains(m.Data, "A password reset was requested") {
		t.Fatalf("not a reset mail:\n%s", m.Data)
	}
	c.add(SetupTTL - time.Minute)
	if info, err := other.SetupInfo(ctx, first); err != nil || info["purpose"] != "reset" {
		t.Fatalf("before expiry: %v %v", info, err)
	}
	c.add(time.Minute)
	if err := other.SetupPassword(ctx, first, "new-password-1", ""); statusOf(err) != 410 || err.Error() != "link expired" {
		t.Fatalf("expired: %v", err)
	}

	// Forgot password answers at once and mails in the background.
	s.ForgotPassword("nobody")
	s.ForgotPassword("dave")
	_, second := receive(t, got)
	if err := s.ResetLink(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	_, third := receive(t, got)
	if _, err := s.SetupInfo(ctx, second); statusOf(err) != 404 {
		t.Fatalf("replaced link: %v", err)
	}

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, svc := range []*Service{s, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = svc.SetupPassword(ctx, third, "raced-password-"+string(rune('a'+i)), "")
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if statusOf(err) != 410 {
			t.Fatalf("race loser: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of 2 racing uses succeeded: %v", ok, errs)
	}
}

// Without a relay, links are refused with upstream's texts.
func TestLinksWithoutMail(t *testing.T) {
	n := nodetest.Start(t)
	c := &clock{t: time.Now()}
	s := startWithMail(t, n, "", c)
	ctx := context.Background()
	email := "erin@example.test"
	if _, err := s.Create(ctx, CreateRequest{Username: "erin", Role: "viewer", Email: &email}); statusOf(err) != 400 ||
		err.Error() != "[mail] not configured — set a password instead of emailing a setup link" {
		t.Fatalf("email-only create without mail: %v", err)
	}
	if err := s.ResetLink(ctx, "admin"); statusOf(err) != 400 || err.Error() != "[mail] not configured" {
		t.Fatalf("reset link without mail: %v", err)
	}
	s.mail = &Mail{Addr: "127.0.0.1:1", From: "kanade@example.test"}
	if err := s.ResetLink(ctx, "admin"); statusOf(err) != 409 || err.Error() != "account has no email on file" {
		t.Fatalf("no email: %v", err)
	}
	pw := "erins-password"
	if _, err := s.Create(ctx, CreateRequest{Username: "erin", Role: "viewer", Email: &email, Password: &pw}); err != nil {
		t.Fatal(err)
	}
	if err := s.ResetLink(ctx, "erin"); statusOf(err) != 502 {
		t.Fatalf("relay down: %v", err)
	}
}
