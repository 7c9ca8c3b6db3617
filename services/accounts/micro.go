package accounts

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
)

// SubjectVerify is the token check the gateway asks on every request.
const SubjectVerify = "kanade.auth.verify"

// Definitions are this package's endpoints: the token check (its own
// service, so slow logins never hold up request checks), login and the
// caller's own account, and the admins' account management.
func Definitions() []api.Definition {
	return []api.Definition{
		{Service: "sessions", Endpoints: []api.Endpoint{
			// Not on HTTP: the gateway's question, answered only about the
			// token the caller holds.
			{Name: "verify", Subject: SubjectVerify, Tier: api.TierPublic},
		}},
		{Service: "auth", Endpoints: []api.Endpoint{
			// Audited by its handler, which alone knows the outcome.
			{Name: "login", Subject: "kanade.auth.login", HTTP: "POST /api/auth/login", Tier: api.TierPublic},
			{Name: "me", Subject: "kanade.auth.me", HTTP: "GET /api/auth/me", Tier: api.TierViewer},
			{Name: "change_password", Subject: "kanade.auth.change_password", HTTP: "POST /api/auth/change-password",
				Tier: api.TierViewer, Audit: "account.change_password"},
			{Name: "mfa_init", Subject: "kanade.auth.mfa_init", HTTP: "POST /api/auth/mfa/init", Tier: api.TierViewer},
			{Name: "mfa_verify", Subject: "kanade.auth.mfa_verify", HTTP: "POST /api/auth/mfa/verify",
				Tier: api.TierViewer, Audit: "account.mfa_enable"},
			{Name: "mfa_disable", Subject: "kanade.auth.mfa_disable", HTTP: "POST /api/auth/mfa/disable",
				Tier: api.TierViewer, Audit: "account.mfa_disable"},
			// Links from mail: the token is the credential. Setting a
			// password is audited by its handler (actor auth, before the
			// change); forgot answers before it mails (and replaces the
			// account's link: not audited, as upstream).
			{Name: "password_setup_info", Subject: "kanade.auth.password_setup_info", HTTP: "GET /api/auth/password-setup/{token}",
				Tier: api.TierPublic},
			{Name: "password_setup", Subject: "kanade.auth.password_setup", HTTP: "POST /api/auth/password-setup/{token}",
				Tier: api.TierPublic},
			{Name: "forgot_password", Subject: "kanade.auth.forgot_password", HTTP: "POST /api/auth/forgot-password",
				Tier: api.TierPublic},
		}},
		{Service: "accounts", Endpoints: []api.Endpoint{
			{Name: "list", Subject: "kanade.accounts.list", HTTP: "GET /api/accounts", Tier: api.TierAdmin},
			{Name: "create", Subject: "kanade.accounts.create", HTTP: "POST /api/accounts", Tier: api.TierAdmin,
				Audit: "account.create", AuditTarget: "username"},
			{Name: "update", Subject: "kanade.accounts.update", HTTP: "PATCH /api/accounts/{username}", Tier: api.TierAdmin,
				Audit: "account.update", AuditTarget: "username"},
			{Name: "delete", Subject: "kanade.accounts.delete", HTTP: "DELETE /api/accounts/{username}", Tier: api.TierAdmin,
				Audit: "account.delete", AuditTarget: "username"},
			{Name: "reset_link", Subject: "kanade.accounts.reset_link", HTTP: "POST /api/accounts/{username}/reset-link", Tier: api.TierAdmin,
				Audit: "account.reset_link", AuditTarget: "username"},
			{Name: "groups_list", Subject: "kanade.permission_groups.list", HTTP: "GET /api/permission-groups", Tier: api.TierAdmin},
			{Name: "groups_create", Subject: "kanade.permission_groups.create", HTTP: "POST /api/permission-groups", Tier: api.TierAdmin,
				Audit: "permission_group.create", AuditTarget: "name"},
			{Name: "groups_update", Subject: "kanade.permission_groups.update", HTTP: "PATCH /api/permission-groups/{name}", Tier: api.TierAdmin,
				Audit: "permission_group.update", AuditTarget: "name"},
			{Name: "groups_delete", Subject: "kanade.permission_groups.delete", HTTP: "DELETE /api/permission-groups/{name}", Tier: api.TierAdmin,
				Audit: "permission_group.delete", AuditTarget: "name"},
		}},
	}
}

// Options configure the accounts services.
type Options struct {
	Conn     *nats.Conn
	Replicas int // of the accounts bucket
	Logger   *slog.Logger
	Audit    api.Auditor
	// JWTSecret, when set (KANADE_JWT_SECRET), signs tokens instead of the
	// secret the nodes share in the bucket; every node must then have it.
	JWTSecret  string
	SessionTTL time.Duration // default DefaultSessionTTL, clamped to 1 h .. 8760 h
	// BootstrapUser and BootstrapPassword seed the first admin when no
	// account exists (KANADE_BOOTSTRAP_ADMIN_USER / _PASSWORD).
	BootstrapUser, BootstrapPassword string
	// Mail is the SMTP relay of setup and reset links (nil: no mail);
	// PublicURL is the dashboard's address the links start with.
	Mail      *Mail
	PublicURL string
	Now       func() time.Time
}

// Running are the started services.
type Running struct {
	svcs []*api.Running
	Svc  *Service
}

// Start opens the bucket, seeds the bootstrap admin and starts answering.
func Start(ctx context.Context, o Options) (*Running, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	o.SessionTTL = min(max(o.SessionTTL, time.Hour), 8760*time.Hour)
	if o.Mail != nil {
		if err := o.Mail.check(); err != nil {
			return nil, fmt.Errorf("accounts: %w", err)
		}
	}
	if o.PublicURL != "" {
		if u, err := url.Parse(o.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("accounts: public URL %q: want http(s)://host[/path]", o.PublicURL)
		}
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	st, err := OpenStore(ctx, js, o.Replicas)
	if err != nil {
		return nil, err
	}
	th, err := openThrottle(ctx, js, o.Replicas)
	if err != nil {
		return nil, err
	}
	secret := []byte(o.JWTSecret)
	if len(secret) == 0 {
		if secret, err = st.Secret(ctx); err != nil {
			return nil, err
		}
	}
	dummy, err := HashPassword("not a password of anyone")
	if err != nil {
		return nil, err
	}
	s := &Service{store: st, secret: secret, ttl: o.SessionTTL, throttle: th, aud: o.Audit,
		log: o.Logger, now: o.Now, dummy: dummy, mail: o.Mail, publicURL: o.PublicURL}
	s.bgCtx, s.bgStop = context.WithCancel(context.Background())
	s.sending = make(chan struct{}, 8)
	if err := s.bootstrap(ctx, o.BootstrapUser, o.BootstrapPassword); err != nil {
		return nil, err
	}
	r := &Running{Svc: s}
	for _, svc := range s.services(o) {
		run, err := api.Start(o.Conn, svc)
		if err != nil {
			r.Stop()
			return nil, err
		}
		r.svcs = append(r.svcs, run)
	}
	return r, nil
}

// Stop stops answering, then cancels and waits out the mails being sent.
func (r *Running) Stop() error {
	var first error
	for _, s := range r.svcs {
		if err := s.Stop(); err != nil && first == nil {
			first = err
		}
	}
	r.Svc.bgStop()
	r.Svc.bg.Wait()
	return first
}

// with decodes the request's parameters into P and names the caller.
func with[P any](fn func(ctx context.Context, actor string, p P) (any, error)) api.Handler {
	return func(ctx context.Context, r api.Request) (any, error) {
		var p P
		if err := api.Params(r, &p); err != nil {
			return nil, err
		}
		return fn(ctx, r.Actor(), p)
	}
}

func (s *Service) services(o Options) []api.Service {
	defs := Definitions()
	type none struct{}
	handlers := []map[string]api.Handler{
		{"verify": with(func(ctx context.Context, _ string, p struct {
			Token string `json:"token"`
		}) (any, error) {
			return s.Verify(ctx, p.Token)
		})},
		{
			"login": func(ctx context.Context, r api.Request) (any, error) {
				var p LoginRequest
				if err := api.Params(r, &p); err != nil {
					return nil, err
				}
				return s.Login(ctx, p, r.Addr())
			},
			"me": with(func(ctx context.Context, actor string, _ none) (any, error) { return s.Me(ctx, actor) }),
			"change_password": with(func(ctx context.Context, actor string, p struct {
				Old string `json:"old_password"`
				New string `json:"new_password"`
			}) (any, error) {
				return nil, s.ChangePassword(ctx, actor, p.Old, p.New)
			}),
			"mfa_init": with(func(ctx context.Context, actor string, _ none) (any, error) { return s.MFAInit(ctx, actor) }),
			"mfa_verify": with(func(ctx context.Context, actor string, p MFAVerifyRequest) (any, error) {
				return nil, s.MFAVerify(ctx, actor, p)
			}),
			"mfa_disable": with(func(ctx context.Context, actor string, p struct {
				Code string `json:"code"`
			}) (any, error) {
				return nil, s.MFADisable(ctx, actor, p.Code)
			}),
			"password_setup_info": with(func(ctx context.Context, _ string, p struct {
				Token string `json:"token"`
			}) (any, error) {
				return s.SetupInfo(ctx, p.Token)
			}),
			"password_setup": func(ctx context.Context, r api.Request) (any, error) {
				var p struct {
					Token    string `json:"token"`
					Password string `json:"password"`
				}
				if err := api.Params(r, &p); err != nil {
					return nil, err
				}
				if err := s.SetupPassword(ctx, p.Token, p.Password, r.Addr()); err != nil {
					return nil, err
				}
				return api.Reply{Status: http.StatusOK}, nil
			},
			"forgot_password": func(ctx context.Context, r api.Request) (any, error) {
				var p struct {
					Username string `json:"username"`
				}
				// Always 200: a malformed body learns nothing either.
				if api.Params(r, &p) == nil {
					s.ForgotPassword(p.Username)
				}
				return api.Reply{Status: http.StatusOK}, nil
			},
		},
		{
			"list":   with(func(ctx context.Context, _ string, _ none) (any, error) { return s.List(ctx) }),
			"create": with(func(ctx context.Context, _ string, p CreateRequest) (any, error) { return s.Create(ctx, p) }),
			"update": with(func(ctx context.Context, _ string, p UpdateRequest) (any, error) { return nil, s.Update(ctx, p) }),
			"delete": with(func(ctx context.Context, _ string, p struct {
				Username string `json:"username"`
			}) (any, error) {
				return nil, s.Delete(ctx, p.Username)
			}),
			"reset_link": func(ctx context.Context, r api.Request) (any, error) {
				var p struct {
					Username string `json:"username"`
				}
				if err := api.Params(r, &p); err != nil {
					return nil, err
				}
				return nil, s.ResetLink(ctx, p.Username)
			},
			"groups_list":   with(func(ctx context.Context, _ string, _ none) (any, error) { return s.Groups(ctx) }),
			"groups_create": with(func(ctx context.Context, _ string, p GroupRequest) (any, error) { return s.CreateGroup(ctx, p) }),
			"groups_update": with(func(ctx context.Context, _ string, p GroupRequest) (any, error) { return nil, s.UpdateGroup(ctx, p) }),
			"groups_delete": with(func(ctx context.Context, _ string, p GroupRequest) (any, error) {
				return nil, s.DeleteGroup(ctx, p.Name)
			}),
		},
	}
	desc := []string{"checks a bearer token against the account as stored now",
		"login, the caller's own account and MFA", "operator accounts and permission groups (admins)"}
	workers := []int{16, 4, 2}
	out := make([]api.Service, len(defs))
	for i, d := range defs {
		out[i] = api.Service{Name: d.Service, Description: desc[i], Endpoints: d.Bind(handlers[i]),
			Workers: workers[i], Logger: o.Logger, Audit: o.Audit}
	}
	return out
}
