package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/services/accounts"
	"github.com/kanade-go/kanade/services/api"
)

// SubjectAuthVerify is the accounts service's token check: request
// {"token":"…"} (empty when the caller sent none), reply
// {"username":"…","role":"…"}, or {"open":true} while no account exists,
// or a 401 whose text says why.
const SubjectAuthVerify = accounts.SubjectVerify

// Identity is who makes a request.
type Identity struct {
	User string `json:"username"`
	Role string `json:"role"`
	Open bool   `json:"open,omitempty"`
	// Features is the account's page allow-list; nil = every page.
	Features *[]string `json:"allowed_features"`
}

// Names of the callers that are not accounts.
const (
	// ServiceTokenUser is the --api-token holder (admin), as upstream's
	// static service token.
	ServiceTokenUser = "service-token"
	// LoopbackUser is a loopback caller of a node that has no account and
	// no token yet (admin, for a first start).
	LoopbackUser = "loopback"
)

type identityKey struct{}

// IdentityOf is the identity the gateway resolved for r (nil on public
// routes).
func IdentityOf(r *http.Request) *Identity {
	id, _ := r.Context().Value(identityKey{}).(*Identity)
	return id
}

// publicPath tells the /api paths that need no token, as upstream lists them.
func publicPath(p string) bool {
	switch p {
	case "/api/auth/login", "/api/version", "/api/auth/forgot-password":
		return true
	}
	return strings.HasPrefix(p, "/api/auth/password-setup/")
}

// authenticator resolves a request's identity: the static token, else the
// accounts service (which re-reads the account on every request, so a
// disabled account's token fails at once).
type authenticator struct {
	nc       *nats.Conn
	log      *slog.Logger
	token    [32]byte
	hasToken bool
	accounts bool
	timeout  time.Duration
	openOnce sync.Once
}

func newAuthenticator(o Options, log *slog.Logger) *authenticator {
	a := &authenticator{nc: o.Conn, log: log, accounts: o.Accounts, timeout: min(o.APITimeout, 5*time.Second)}
	if o.APIToken != "" {
		a.token, a.hasToken = sha256.Sum256([]byte(o.APIToken)), true
	}
	return a
}

// errAuth is a refusal with its status.
type errAuth struct {
	status int
	text   string
}

func (e *errAuth) Error() string { return e.text }

func unauthorized(text string) error { return &errAuth{http.StatusUnauthorized, text} }

// identify returns the caller's identity or why there is none.
func (a *authenticator) identify(ctx context.Context, r *http.Request) (*Identity, error) {
	bearer := ""
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		bearer = strings.TrimSpace(h[7:])
	}
	if bearer != "" && a.hasToken {
		got := sha256.Sum256([]byte(bearer))
		if subtle.ConstantTimeCompare(got[:], a.token[:]) == 1 {
			return &Identity{User: ServiceTokenUser, Role: api.TierAdmin}, nil
		}
	}
	if !a.accounts {
		switch {
		case bearer != "" || a.hasToken:
			return nil, unauthorized("missing or invalid API token (Authorization: Bearer <token>)")
		default:
			return a.open(r)
		}
	}
	id, err := a.verify(ctx, bearer)
	if err != nil {
		return nil, err
	}
	if id.Open {
		if a.hasToken {
			return nil, unauthorized("missing bearer token")
		}
		return a.open(r)
	}
	return id, nil
}

// open lets a loopback caller in while nothing guards the API.
func (a *authenticator) open(r *http.Request) (*Identity, error) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, unauthorized("this node has no account and no API token yet: the API answers loopback clients only (set KANADE_BOOTSTRAP_ADMIN_PASSWORD or --api-token)")
	}
	a.openOnce.Do(func() {
		a.log.Warn("no account exists and no --api-token is set: the HTTP API is open, as admin, to loopback clients; " +
			"start once with KANADE_BOOTSTRAP_ADMIN_USER/KANADE_BOOTSTRAP_ADMIN_PASSWORD (or set --api-token) to close it")
	})
	return &Identity{User: LoopbackUser, Role: api.TierAdmin}, nil
}

// verify asks the accounts service who the token is.
func (a *authenticator) verify(ctx context.Context, token string) (*Identity, error) {
	body, _ := json.Marshal(map[string]string{"token": token})
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	m, err := a.nc.RequestWithContext(ctx, SubjectAuthVerify, body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, &errAuth{http.StatusServiceUnavailable, "accounts service is not running: cannot check the token"}
		}
		return nil, &errAuth{http.StatusServiceUnavailable, "auth backend unavailable"}
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		text := string(m.Data)
		if code != "401" {
			return nil, &errAuth{http.StatusServiceUnavailable, "auth backend unavailable: " + text}
		}
		return nil, unauthorized(text)
	}
	var id Identity
	if err := json.Unmarshal(m.Data, &id); err != nil || (!id.Open && (id.User == "" || api.TierRank(id.Role) < 1)) {
		return nil, &errAuth{http.StatusServiceUnavailable, "auth backend unavailable: bad verify reply"}
	}
	return &id, nil
}

// authenticate resolves the identity of every /api request but the public
// ones, and refuses those without one. Rejections are plain text, 401 (so
// the dashboard logs out) or 503.
func (a *authenticator) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isAPI(r.URL.Path) || publicPath(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		id, err := a.identify(r.Context(), r)
		if err != nil {
			a.refuse(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// guard lets through only a caller with an identity, as a non-public API
// route would (for /metrics).
func (a *authenticator) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := a.identify(r.Context(), r); err != nil {
			a.refuse(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *authenticator) refuse(w http.ResponseWriter, r *http.Request, err error) {
	var e *errAuth
	if !errors.As(err, &e) {
		e = &errAuth{http.StatusServiceUnavailable, err.Error()}
	}
	a.log.Warn("request refused", "path", logPath(r.URL.Path), "status", e.status, "why", e.text)
	if e.status == http.StatusUnauthorized && !a.accounts {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kanade"`)
	}
	textError(w, e.status, e.text)
}

// allowed checks a route's tier against the caller: "" when the call may
// go on, else the 401/403 text. A tier the gateway does not know refuses.
func allowed(route Route, id *Identity) (int, string) {
	need := api.TierRank(route.Tier)
	switch {
	case need < 0:
		return http.StatusForbidden, fmt.Sprintf("route %s declares no known tier (%q): refused", route.Pattern(), route.Tier)
	case need == 0:
		return 0, ""
	case id == nil:
		return http.StatusUnauthorized, "missing bearer token"
	case api.TierRank(id.Role) < need:
		return http.StatusForbidden, fmt.Sprintf("%s role required (caller is %s)", route.Tier, id.Role)
	}
	return 0, ""
}

// clientAddr is the caller's address: the rightmost X-Forwarded-For entry
// (the one the nearest proxy added), else the connection's peer.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	// X-Forwarded-For is believed only from a proxy on this host: from
	// anyone else it would let a client pick the address the login
	// throttle counts (a new one per attempt) and the audit trail records.
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			parts := strings.Split(xff, ",")
			if last := strings.TrimSpace(parts[len(parts)-1]); last != "" {
				return last
			}
		}
	}
	return host
}
