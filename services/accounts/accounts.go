package accounts

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/kanade-go/kanade/services/api"
)

// Callers that are not accounts, as the gateway names them.
const (
	serviceTokenUser = "service-token"
	loopbackUser     = "loopback"
)

// Identity is the verify answer: who a token is, or that no account exists
// yet (the gateway then lets loopback callers in).
type Identity struct {
	Username string `json:"username,omitempty"`
	Role     string `json:"role,omitempty"`
	Open     bool   `json:"open,omitempty"`
	// AllowedFeatures is the effective page allow-list; null = all.
	AllowedFeatures *[]string `json:"allowed_features"`
}

// Service answers login, the token check and account management.
type Service struct {
	store    *Store
	secret   []byte
	ttl      time.Duration
	throttle *throttle
	aud      api.Auditor
	log      *slog.Logger
	now      func() time.Time
	dummy    string // a hash checked for unknown users, so they cost as much

	mail      *Mail
	publicURL string
	// bg owns the mails sent after forgot-password answered; bgStop
	// cancels them at Stop.
	bg     sync.WaitGroup
	bgCtx  context.Context
	bgStop context.CancelFunc
	// sending bounds the background mails in flight.
	sending chan struct{}
}

func unauthorized(text string) error { return api.Errorf(http.StatusUnauthorized, "%s", text) }

// Verify is the gateway's per-request check: the token's signature and
// expiry, then the account as stored now (so disabling or deleting an
// account ends its tokens at once).
func (s *Service) Verify(ctx context.Context, token string) (Identity, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		any, err := s.store.Any(ctx)
		if err != nil {
			return Identity{}, unauthorized("auth backend unavailable")
		}
		if !any {
			return Identity{Open: true}, nil
		}
		return Identity{}, unauthorized("missing bearer token")
	}
	sub, err := parse(s.secret, token, s.now())
	if err != nil {
		return Identity{}, unauthorized("invalid token: " + err.Error())
	}
	d, _, err := s.store.load(ctx)
	if err != nil {
		return Identity{}, unauthorized("auth backend unavailable")
	}
	a := d.Accounts[sub]
	switch {
	case a == nil || api.TierRank(a.Role) < 1:
		return Identity{}, unauthorized("unknown account")
	case a.Disabled:
		return Identity{}, unauthorized("account disabled")
	}
	return Identity{Username: a.Username, Role: a.Role, AllowedFeatures: effective(a, d.Groups)}, nil
}

// LoginRequest is POST /api/auth/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	TOTPCode string `json:"totp_code"`
}

// LoginReply is a successful login.
type LoginReply struct {
	Token        string `json:"token"`
	Role         string `json:"role"`
	MustChangePW bool   `json:"must_change_pw"`
	Exp          int64  `json:"exp"`
}

// Login checks a password (and TOTP code) and mints a token. Failures are
// counted by the throttle and audited; a success is audited before the
// token is handed out.
func (s *Service) Login(ctx context.Context, req LoginRequest, addr string) (any, error) {
	if addr == "" {
		addr = "unknown"
	}
	now := s.now()
	d, err := s.throttle.wait(ctx, req.Username, addr, now)
	if err != nil {
		return nil, api.Errorf(http.StatusInternalServerError, "auth backend unavailable")
	}
	if d > 0 {
		return nil, &api.Error{Status: http.StatusTooManyRequests, Message: "too many login attempts; try again later", RetryAfter: retryAfter(d)}
	}
	a, err := s.store.Get(ctx, req.Username)
	if err != nil {
		return nil, api.Errorf(http.StatusInternalServerError, "auth backend unavailable")
	}
	hash := s.dummy
	if a != nil {
		hash = a.PasswordHash
	}
	ok, err := CheckPassword(hash, req.Password)
	if err != nil && a != nil {
		s.log.Error("login: stored password hash unreadable", "username", a.Username, "err", err)
	}
	fail := func(why string) (any, error) {
		if err := s.throttle.fail(ctx, req.Username, addr, now); err != nil {
			s.log.Warn("login throttle: failure not counted", "err", err)
		}
		// Nobody is authenticated: the actor is the login itself, the
		// name tried its target.
		s.record(ctx, "auth", "auth.login_failed", short(req.Username), addr, map[string]any{"reason": why})
		return nil, unauthorized("invalid credentials")
	}
	switch {
	case a == nil:
		return fail("unknown account")
	case a.Disabled:
		return fail("account disabled")
	case !ok:
		return fail("wrong password")
	case api.TierRank(a.Role) < 1:
		return nil, api.Errorf(http.StatusInternalServerError, "corrupt role")
	}
	if a.TOTPSecret != "" {
		if strings.TrimSpace(req.TOTPCode) == "" {
			return map[string]bool{"mfa_required": true}, nil
		}
		good, err := checkTOTP(a.TOTPSecret, req.TOTPCode, now)
		if err != nil {
			return nil, api.Errorf(http.StatusInternalServerError, "mfa check failed")
		}
		if !good {
			return fail("wrong mfa code")
		}
	}
	if err := s.throttle.succeed(ctx, req.Username); err != nil {
		s.log.Warn("login throttle: streak not cleared", "err", err)
	}
	exp := now.Add(s.ttl)
	token, err := mint(s.secret, a.Username, a.Role, exp)
	if err != nil {
		return nil, api.Errorf(http.StatusInternalServerError, "token mint failed")
	}
	if err := s.record(ctx, a.Username, "auth.login", a.Username, addr, map[string]any{"role": a.Role}); err != nil {
		return nil, api.Unavailable("audit trail unavailable; no token issued: %v", err)
	}
	return LoginReply{Token: token, Role: a.Role, MustChangePW: a.MustChangePW, Exp: exp.Unix()}, nil
}

// record writes an audit record of a login; nil when there is no trail.
func (s *Service) record(ctx context.Context, actor, action, user, addr string, payload map[string]any) error {
	if s.aud == nil {
		return nil
	}
	payload["username"] = user
	b, _ := api.Marshal(payload)
	err := s.aud.Record(ctx, api.Entry{Actor: actor, Action: action, Target: user, Addr: addr, Payload: b})
	if err != nil {
		s.log.Warn("audit record of a login not written", "action", action, "err", err)
	}
	return err
}

// short cuts a name a caller sent to what a record keeps.
func short(s string) string {
	if len(s) > 128 {
		return s[:128] + "…"
	}
	return s
}

// Me is GET /api/auth/me.
type Me struct {
	Username        string    `json:"username"`
	Role            string    `json:"role"`
	MustChangePW    bool      `json:"must_change_pw"`
	AllowedFeatures *[]string `json:"allowed_features"` // effective (group resolved); null = all
	MFAEnabled      bool      `json:"mfa_enabled"`
}

// Me describes the caller.
func (s *Service) Me(ctx context.Context, actor string) (Me, error) {
	if actor == serviceTokenUser || actor == loopbackUser {
		return Me{Username: actor, Role: api.TierAdmin}, nil
	}
	d, _, err := s.store.load(ctx)
	if err != nil {
		return Me{}, unauthorized("auth backend unavailable")
	}
	a := d.Accounts[actor]
	if a == nil {
		return Me{}, unauthorized("unknown account")
	}
	return Me{Username: a.Username, Role: a.Role, MustChangePW: a.MustChangePW, MFAEnabled: a.TOTPSecret != "",
		AllowedFeatures: effective(a, d.Groups)}, nil
}

func (s *Service) self(ctx context.Context, actor string) (*Account, error) {
	a, err := s.store.Get(ctx, actor)
	if err != nil {
		return nil, unauthorized("auth backend unavailable")
	}
	if a == nil {
		return nil, unauthorized("unknown account")
	}
	return a, nil
}

// ChangePassword is the caller's own change.
func (s *Service) ChangePassword(ctx context.Context, actor, old, new string) error {
	if err := checkPassword(new); err != nil {
		return api.BadRequest("new password too short (min 8 chars)")
	}
	a, err := s.self(ctx, actor)
	if err != nil {
		return err
	}
	if ok, _ := CheckPassword(a.PasswordHash, old); !ok {
		return unauthorized("old password incorrect")
	}
	hash, err := HashPassword(new)
	if err != nil {
		return err
	}
	return s.store.Update(ctx, func(accts map[string]*Account, _ map[string]*Group) error {
		cur := accts[actor]
		if cur == nil {
			return unauthorized("unknown account")
		}
		cur.PasswordHash, cur.MustChangePW, cur.UpdatedAt = hash, false, s.now()
		return nil
	})
}

// MFAInit offers a new TOTP secret; nothing is stored until MFAVerify.
func (s *Service) MFAInit(ctx context.Context, actor string) (map[string]string, error) {
	a, err := s.self(ctx, actor)
	if err != nil {
		return nil, err
	}
	secret, url, err := newTOTP(a.Username)
	if err != nil {
		return nil, err
	}
	return map[string]string{"secret": secret, "otpauth_url": url}, nil
}

// MFAVerifyRequest turns MFA on (or changes its secret).
type MFAVerifyRequest struct {
	Secret      string `json:"secret"`
	Code        string `json:"code"`
	CurrentCode string `json:"current_code"`
}

// MFAVerify stores secret once code proves the caller holds it.
func (s *Service) MFAVerify(ctx context.Context, actor string, req MFAVerifyRequest) error {
	a, err := s.self(ctx, actor)
	if err != nil {
		return err
	}
	now := s.now()
	if a.TOTPSecret != "" {
		if strings.TrimSpace(req.CurrentCode) == "" {
			return api.BadRequest("current code required to change MFA")
		}
		if ok, _ := checkTOTP(a.TOTPSecret, req.CurrentCode, now); !ok {
			return api.BadRequest("invalid current code")
		}
	}
	ok, err := checkTOTP(strings.TrimSpace(req.Secret), req.Code, now)
	if err != nil {
		return api.BadRequest("mfa verify: %v", err)
	}
	if !ok {
		return api.BadRequest("invalid code")
	}
	return s.store.Update(ctx, func(accts map[string]*Account, _ map[string]*Group) error {
		cur := accts[actor]
		if cur == nil {
			return unauthorized("unknown account")
		}
		cur.TOTPSecret, cur.UpdatedAt = strings.TrimSpace(req.Secret), now
		return nil
	})
}

// MFADisable turns MFA off, given a current code.
func (s *Service) MFADisable(ctx context.Context, actor, code string) error {
	a, err := s.self(ctx, actor)
	if err != nil {
		return err
	}
	if a.TOTPSecret == "" {
		return nil
	}
	now := s.now()
	if ok, _ := checkTOTP(a.TOTPSecret, code, now); !ok {
		return api.BadRequest("invalid code")
	}
	return s.store.Update(ctx, func(accts map[string]*Account, _ map[string]*Group) error {
		if cur := accts[actor]; cur != nil {
			cur.TOTPSecret, cur.UpdatedAt = "", now
		}
		return nil
	})
}

// Listed is one account in GET /api/accounts (upstream's integers, never
// hashes).
type Listed struct {
	Username        string    `json:"username"`
	Role            string    `json:"role"`
	Disabled        int       `json:"disabled"`
	MustChangePW    int       `json:"must_change_pw"`
	Email           *string   `json:"email"`
	AllowedFeatures *[]string `json:"allowed_features"`
	PermissionGroup *string   `json:"permission_group"`
	MFAEnabled      bool      `json:"mfa_enabled"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// List is every account, by username.
func (s *Service) List(ctx context.Context) ([]Listed, error) {
	all, err := s.store.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Listed, 0, len(all))
	for _, a := range all {
		l := Listed{Username: a.Username, Role: a.Role, Disabled: b2i(a.Disabled), MustChangePW: b2i(a.MustChangePW),
			MFAEnabled: a.TOTPSecret != "", CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
		if a.Email != "" {
			e := a.Email
			l.Email = &e
		}
		if a.PermissionGroup != "" {
			g := a.PermissionGroup
			l.PermissionGroup = &g
		}
		l.AllowedFeatures = a.AllowedFeatures
		out = append(out, l)
	}
	return out, nil
}

// CreateRequest is POST /api/accounts.
type CreateRequest struct {
	Username        string          `json:"username"`
	Password        *string         `json:"password"`
	Role            string          `json:"role"`
	Email           *string         `json:"email"`
	AllowedFeatures json.RawMessage `json:"allowed_features"`
	PermissionGroup json.RawMessage `json:"permission_group"`
}

func validRole(r string) error {
	if api.TierRank(r) < 1 {
		return api.BadRequest("role must be viewer/operator/admin")
	}
	return nil
}

func validEmail(e string) error {
	if a, err := mail.ParseAddress(e); err != nil || a.Address != e {
		return api.BadRequest("invalid email address")
	}
	return nil
}

func validUsername(u string) error {
	if u == "" {
		return api.BadRequest("username required")
	}
	if len(u) > 128 || strings.ContainsFunc(u, unicode.IsControl) {
		return api.BadRequest("username must be at most 128 characters, without control characters")
	}
	// The audit trail names other actors so: an account of such a name
	// would write records that read as theirs. (Checked at create only:
	// an account of an older store keeps its name.)
	for _, p := range reservedActorPrefixes {
		if strings.HasPrefix(strings.ToLower(u), p) {
			return api.BadRequest("username must not start with %q: the audit trail names NATS callers, host commands and schedules so", p)
		}
	}
	if slices.Contains(reservedActors, strings.ToLower(u)) {
		return api.BadRequest("username %q is reserved: the audit trail names another actor so", u)
	}
	return nil
}

// reservedActorPrefixes and reservedActors are the audit actors that are
// not accounts (see api.CallerActor, the gateway's identities, the
// scheduler's fires).
var (
	reservedActorPrefixes = []string{"nats:", "cli:", "schedule:"}
	reservedActors        = []string{"nats", "cli", "scheduler", "auth", "service-token", "loopback", "unknown"}
)

// Create adds an account.
func (s *Service) Create(ctx context.Context, req CreateRequest) (any, error) {
	user := strings.TrimSpace(req.Username)
	if err := validUsername(user); err != nil {
		return nil, err
	}
	if err := validRole(req.Role); err != nil {
		return nil, err
	}
	email := ""
	if req.Email != nil && strings.TrimSpace(*req.Email) != "" {
		email = strings.TrimSpace(*req.Email)
		if err := validEmail(email); err != nil {
			return nil, err
		}
	}
	features, err := tri(req.AllowedFeatures).features()
	if err != nil {
		return nil, err
	}
	group, err := tri(req.PermissionGroup).group()
	if err != nil {
		return nil, err
	}
	switch {
	case req.Password != nil:
		if err := checkPassword(*req.Password); err != nil {
			return nil, err
		}
	case email == "":
		return nil, api.BadRequest("password or email required")
	case !s.mail.Configured():
		return nil, api.BadRequest("[mail] not configured — set a password instead of emailing a setup link")
	case s.linkBase() == "":
		return nil, api.Errorf(http.StatusInternalServerError, "cannot determine link base URL (set [server] public_url)")
	}
	// Email only: a password nobody knows until the setup link sets one.
	pw := uuid.NewString()
	if req.Password != nil {
		pw = *req.Password
	}
	hash, err := HashPassword(pw)
	if err != nil {
		return nil, err
	}
	now := s.now()
	err = s.store.Update(ctx, func(accts map[string]*Account, groups map[string]*Group) error {
		if group != "" && groups[group] == nil {
			return api.BadRequest("no such permission group: %s", group)
		}
		if accts[user] != nil {
			return api.Conflict("username already exists")
		}
		accts[user] = &Account{Username: user, PasswordHash: hash, Role: req.Role, Email: email,
			AllowedFeatures: features, PermissionGroup: group, CreatedAt: now, UpdatedAt: now}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sent := false
	if req.Password == nil {
		if err := s.sendLink(ctx, user, email, purposeSetup); err != nil {
			s.log.Warn("account created, setup link not mailed", "username", user, "err", err)
		} else {
			sent = true
		}
	}
	return api.Created(map[string]bool{"setup_link_sent": sent}), nil
}

// UpdateRequest is PATCH /api/accounts/{username}: absent keys stay.
type UpdateRequest struct {
	Username        string          `json:"username"`
	Role            *string         `json:"role"`
	Password        *string         `json:"password"`
	Disabled        *bool           `json:"disabled"`
	Email           *string         `json:"email"`
	AllowedFeatures json.RawMessage `json:"allowed_features"`
	PermissionGroup json.RawMessage `json:"permission_group"`
}

// Update changes an account; the last enabled admin cannot be demoted or
// disabled (409), decided in the same compare-and-set as the write.
func (s *Service) Update(ctx context.Context, req UpdateRequest) error {
	if req.Role != nil {
		if err := validRole(*req.Role); err != nil {
			return err
		}
	}
	if req.Email != nil && *req.Email != "" {
		if err := validEmail(*req.Email); err != nil {
			return err
		}
	}
	featTri, groupTri := tri(req.AllowedFeatures), tri(req.PermissionGroup)
	features, err := featTri.features()
	if err != nil {
		return err
	}
	group, err := groupTri.group()
	if err != nil {
		return err
	}
	hash := ""
	if req.Password != nil {
		if err := checkPassword(*req.Password); err != nil {
			return err
		}
		if hash, err = HashPassword(*req.Password); err != nil {
			return err
		}
	}
	now := s.now()
	return s.store.Update(ctx, func(accts map[string]*Account, groups map[string]*Group) error {
		if group != "" && groups[group] == nil {
			return api.BadRequest("no such permission group: %s", group)
		}
		a := accts[req.Username]
		if a == nil {
			return api.NotFound("no such account")
		}
		lastAdmin := a.Role == api.TierAdmin && !a.Disabled && enabledAdmins(accts) <= 1
		if lastAdmin && req.Role != nil && *req.Role != api.TierAdmin {
			return api.Conflict("cannot demote the last enabled admin")
		}
		if lastAdmin && req.Disabled != nil && *req.Disabled {
			return api.Conflict("cannot disable the last enabled admin")
		}
		if req.Role != nil {
			a.Role = *req.Role
		}
		if req.Disabled != nil {
			a.Disabled = *req.Disabled
		}
		if req.Email != nil {
			a.Email = *req.Email
		}
		if hash != "" {
			a.PasswordHash, a.MustChangePW = hash, true
		}
		if featTri.set {
			a.AllowedFeatures = features
		}
		if groupTri.set {
			a.PermissionGroup = group
		}
		a.UpdatedAt = now
		return nil
	})
}

// Delete removes an account, never the last enabled admin, and its setup
// link.
func (s *Service) Delete(ctx context.Context, user string) error {
	err := s.store.Update(ctx, func(accts map[string]*Account, _ map[string]*Group) error {
		a := accts[user]
		if a == nil {
			return api.NotFound("no such account")
		}
		if a.Role == api.TierAdmin && !a.Disabled && enabledAdmins(accts) <= 1 {
			return api.Conflict("cannot delete the last enabled admin")
		}
		delete(accts, user)
		return nil
	})
	if err == nil {
		s.dropSetup(ctx, user)
	}
	return err
}

// bootstrap seeds the first admin (must change its password) when no
// account exists and a password is configured.
func (s *Service) bootstrap(ctx context.Context, user, password string) error {
	if user == "" {
		user = "admin"
	}
	any, err := s.store.Any(ctx)
	if err != nil || any {
		return err
	}
	if password == "" {
		s.log.Warn("no account exists and KANADE_BOOTSTRAP_ADMIN_PASSWORD is not set: nobody is seeded " +
			"(the --api-token, or loopback while there is neither, is the way in)")
		return nil
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	now := s.now()
	seeded := false
	err = s.store.Update(ctx, func(accts map[string]*Account, _ map[string]*Group) error {
		if len(accts) > 0 {
			seeded = false
			return nil // another node was first
		}
		accts[user] = &Account{Username: user, PasswordHash: hash, Role: api.TierAdmin, MustChangePW: true, CreatedAt: now, UpdatedAt: now}
		seeded = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if seeded {
		s.log.Info("bootstrap admin created; it must change its password at first login", "username", user)
	}
	return nil
}

// GroupListed is one group in GET /api/permission-groups.
type GroupListed struct {
	Group
	MemberCount int `json:"member_count"`
}

// Groups lists the permission groups by name, with their member counts.
func (s *Service) Groups(ctx context.Context) ([]GroupListed, error) {
	d, _, err := s.store.load(ctx)
	if err != nil {
		return nil, err
	}
	out := []GroupListed{}
	for _, g := range d.Groups {
		n := 0
		for _, a := range d.Accounts {
			if a.PermissionGroup == g.Name {
				n++
			}
		}
		out = append(out, GroupListed{Group: *g, MemberCount: n})
	}
	slices.SortFunc(out, func(a, b GroupListed) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// GroupRequest is POST /api/permission-groups and PATCH /{name}.
type GroupRequest struct {
	Name     string   `json:"name"`
	Features []string `json:"features"`
}

// CreateGroup adds a group.
func (s *Service) CreateGroup(ctx context.Context, req GroupRequest) (any, error) {
	name := strings.TrimSpace(req.Name)
	if name == "" {
		return nil, api.BadRequest("group name required")
	}
	features, err := canonical(req.Features)
	if err != nil {
		return nil, err
	}
	now := s.now()
	err = s.store.Update(ctx, func(_ map[string]*Account, groups map[string]*Group) error {
		if groups[name] != nil {
			return api.Conflict("group already exists")
		}
		groups[name] = &Group{Name: name, Features: features, CreatedAt: now, UpdatedAt: now}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return api.Created(nil), nil
}

// UpdateGroup replaces a group's features.
func (s *Service) UpdateGroup(ctx context.Context, req GroupRequest) error {
	features, err := canonical(req.Features)
	if err != nil {
		return err
	}
	now := s.now()
	return s.store.Update(ctx, func(_ map[string]*Account, groups map[string]*Group) error {
		g := groups[req.Name]
		if g == nil {
			return api.NotFound("no such group")
		}
		g.Features, g.UpdatedAt = features, now
		return nil
	})
}

// DeleteGroup removes a group no account is in.
func (s *Service) DeleteGroup(ctx context.Context, name string) error {
	return s.store.Update(ctx, func(accts map[string]*Account, groups map[string]*Group) error {
		if groups[name] == nil {
			return api.NotFound("no such group")
		}
		for _, a := range accts {
			if a.PermissionGroup == name {
				return api.Conflict("group still has member(s); reassign them first")
			}
		}
		delete(groups, name)
		return nil
	})
}
