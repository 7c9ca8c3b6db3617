package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
)

// Password setup and reset links: a random UUIDv4 in the URL, its SHA-256
// in the accounts bucket (never the token itself), 72 hours, one per user,
// used once. The token's key is consumed with a compare-and-set on its
// revision, so two nodes answering the same link cannot both set a
// password.

// SetupTTL is how long a setup or reset link is good.
const SetupTTL = 72 * time.Hour

const (
	purposeSetup = "setup"
	purposeReset = "reset"

	keySetupPrefix = "pwsetup."      // + sha256(token) hex: the token
	keySetupUser   = "pwsetup_user." // + hex(username): the user's current token hash
)

// setupToken is the stored value of one link.
type setupToken struct {
	Username  string    `json:"username"`
	Purpose   string    `json:"purpose"`
	ExpiresAt time.Time `json:"expires_at"`
	// Used marks a consumed link (kept so a second use is told 410).
	Used bool `json:"used,omitempty"`
}

// hashToken is the stored name of a token.
func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// validToken tells whether s has a UUID's shape (the 36-character form
// the links carry), so nothing else reaches a KV key.
func validToken(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// issueSetup makes a new link token for user, replacing any earlier one.
func (s *Service) issueSetup(ctx context.Context, user, purpose string) (string, time.Time, error) {
	token := uuid.NewString()
	exp := s.now().Add(SetupTTL)
	b, _ := json.Marshal(setupToken{Username: user, Purpose: purpose, ExpiresAt: exp})
	kv := s.store.kv
	ukey := setupUserKey(user)
	if e, err := kv.Get(ctx, ukey); err == nil {
		// One per user: the earlier link stops working.
		if err := kv.Delete(ctx, keySetupPrefix+string(e.Value())); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return "", time.Time{}, fmt.Errorf("replace setup link: %w", err)
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", time.Time{}, fmt.Errorf("read setup link: %w", err)
	}
	h := hashToken(token)
	if _, err := kv.Put(ctx, keySetupPrefix+h, b); err != nil {
		return "", time.Time{}, fmt.Errorf("store setup link: %w", err)
	}
	if _, err := kv.Put(ctx, ukey, []byte(h)); err != nil {
		return "", time.Time{}, fmt.Errorf("store setup link: %w", err)
	}
	return token, exp, nil
}

// setupUserKey is the key of user's current token hash (usernames may hold
// what a KV key may not).
func setupUserKey(user string) string {
	if k := keySetupUser + hex.EncodeToString([]byte(user)); len(k) <= 255 {
		return k
	}
	return keySetupUser + hashToken(user)
}

// dropSetup removes user's link (the account is gone); failures are logged,
// the link then finds no account.
func (s *Service) dropSetup(ctx context.Context, user string) {
	kv := s.store.kv
	e, err := kv.Get(ctx, setupUserKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return
	}
	if err == nil {
		err = kv.Delete(ctx, keySetupPrefix+string(e.Value()))
	}
	if err == nil {
		err = kv.Delete(ctx, setupUserKey(user))
	}
	if err != nil {
		s.log.Warn("setup link of a deleted account not removed", "username", user, "err", err)
	}
}

// lookupSetup reads a link: 404 invalid, 410 expired or used.
func (s *Service) lookupSetup(ctx context.Context, token string) (setupToken, uint64, error) {
	var t setupToken
	if !validToken(token) {
		return t, 0, api.NotFound("invalid link")
	}
	e, err := s.store.kv.Get(ctx, keySetupPrefix+hashToken(strings.ToLower(token)))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return t, 0, api.NotFound("invalid link")
	}
	if err != nil {
		return t, 0, api.Unavailable("setup links unavailable: %v", err)
	}
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		return t, 0, api.NotFound("invalid link")
	}
	if t.Used {
		return t, 0, api.Errorf(http.StatusGone, "link already used or expired")
	}
	if !s.now().Before(t.ExpiresAt) {
		return t, 0, api.Errorf(http.StatusGone, "link expired")
	}
	return t, e.Revision(), nil
}

// SetupInfo is GET /api/auth/password-setup/{token}.
func (s *Service) SetupInfo(ctx context.Context, token string) (map[string]string, error) {
	t, _, err := s.lookupSetup(ctx, token)
	if err != nil {
		return nil, err
	}
	return map[string]string{"username": t.Username, "purpose": t.Purpose}, nil
}

// SetupPassword is POST /api/auth/password-setup/{token}: it consumes the
// link (compare-and-set on its revision) and sets the password, leaving
// disabled and the TOTP secret as they are.
func (s *Service) SetupPassword(ctx context.Context, token, password, addr string) error {
	if err := checkPassword(password); err != nil {
		return err
	}
	t, rev, err := s.lookupSetup(ctx, token)
	if err != nil {
		return err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	// The record before the change, as for every mutation: no password is
	// set through a link without it.
	if err := s.record(ctx, "auth", "account.password_set_via_link", t.Username, addr, map[string]any{}); err != nil {
		return api.Unavailable("audit trail unavailable, nothing was changed: %v", err)
	}
	used := t
	used.Used = true
	b, _ := json.Marshal(used)
	if _, err := s.store.kv.Update(ctx, keySetupPrefix+hashToken(strings.ToLower(token)), b, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return api.Errorf(http.StatusGone, "link already used or expired")
		}
		return api.Unavailable("setup links unavailable: %v", err)
	}
	now := s.now()
	err = s.store.Update(ctx, func(accts map[string]*Account, _ map[string]*Group) error {
		a := accts[t.Username]
		if a == nil {
			return api.NotFound("invalid link")
		}
		a.PasswordHash, a.MustChangePW, a.UpdatedAt = hash, false, now
		return nil
	})
	return err
}

// linkBase is where links point, without a trailing slash.
func (s *Service) linkBase() string { return strings.TrimRight(s.publicURL, "/") }

// sendLink issues a token for user and mails its link to email.
func (s *Service) sendLink(ctx context.Context, user, email, purpose string) error {
	token, exp, err := s.issueSetup(ctx, user, purpose)
	if err != nil {
		return err
	}
	subject, body := linkMail(user, purpose, s.linkBase()+"/password-setup/"+token, exp)
	return s.mail.send(ctx, email, subject, body)
}

// ForgotPassword answers at once; when mail and a public URL are set, a
// background send mails a reset link to the account's address. Unknown
// users and accounts without an address are silent.
func (s *Service) ForgotPassword(username string) {
	user := strings.TrimSpace(username)
	if !s.mail.Configured() || s.linkBase() == "" || user == "" || len(user) > 128 {
		return
	}
	// Not throttled (as upstream), but bounded: a flood of requests does
	// not become a flood of goroutines and relay connections.
	select {
	case s.sending <- struct{}{}:
	default:
		s.log.Warn("forgot password: too many mails in flight; request dropped", "username", short(user))
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer func() { <-s.sending }()
		ctx, cancel := context.WithTimeout(s.bgCtx, 2*time.Minute)
		defer cancel()
		a, err := s.store.Get(ctx, user)
		if err != nil || a == nil || a.Email == "" {
			return
		}
		if err := s.sendLink(ctx, a.Username, a.Email, purposeReset); err != nil {
			s.log.Warn("forgot password: reset link not mailed", "username", a.Username, "err", err)
		}
	}()
}

// ResetLink is POST /api/accounts/{username}/reset-link (admins).
func (s *Service) ResetLink(ctx context.Context, user string) error {
	if !s.mail.Configured() {
		return api.BadRequest("[mail] not configured")
	}
	a, err := s.store.Get(ctx, user)
	if err != nil {
		return api.Unavailable("accounts unavailable: %v", err)
	}
	if a == nil {
		return api.NotFound("no such account")
	}
	if a.Email == "" {
		return api.Conflict("account has no email on file")
	}
	if s.linkBase() == "" {
		return api.Errorf(http.StatusInternalServerError, "cannot determine link base URL (set [server] public_url)")
	}
	// Its record is the endpoint's, written before this runs; a mail
	// that did not go adds the second record with the 502.
	if sendErr := s.sendLink(ctx, a.Username, a.Email, purposeReset); sendErr != nil {
		s.log.Warn("reset link not mailed", "username", a.Username, "err", sendErr)
		return api.Errorf(http.StatusBadGateway, "link generated but email delivery failed — check [mail] / SMTP")
	}
	return nil
}
