// Package accounts is who may use kanade: operator accounts (argon2id
// passwords, a role each, optional TOTP), login with HS256 tokens, the
// token check the gateway asks on every request, the login throttle, and
// the admins' account management.
//
// Accounts live in one document of a replicated KV bucket, so every node
// sees the same users and every change is one compare-and-set: the
// last-admin guard cannot be raced. The JWT secret is in the same bucket,
// so a token minted by one node is good on all.
package accounts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
)

// Bucket is the KV bucket of accounts and the token secret.
const Bucket = "accounts"

const (
	keyAccounts = "users"
	keySecret   = "jwt_secret"
)

// Account is one operator account as stored.
type Account struct {
	Username     string `json:"username"`
	PasswordHash string `json:"password_hash"`
	Role         string `json:"role"`
	Disabled     bool   `json:"disabled"`
	MustChangePW bool   `json:"must_change_pw"`
	Email        string `json:"email,omitempty"`
	TOTPSecret   string `json:"totp_secret,omitempty"`
	// AllowedFeatures restricts the account to these pages (nil: all);
	// PermissionGroup, when set, wins over it.
	AllowedFeatures *[]string `json:"allowed_features,omitempty"`
	PermissionGroup string    `json:"permission_group,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// document is the stored value: every account by username.
type document struct {
	Accounts map[string]*Account `json:"accounts"`
	Groups   map[string]*Group   `json:"groups,omitempty"`
}

// Store reads and changes the accounts document.
type Store struct {
	kv jetstream.KeyValue

	mu     sync.Mutex // guards the cache
	rev    uint64
	cached *document
}

// OpenStore makes sure the bucket exists (replicas as the node's) and
// opens it.
func OpenStore(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: Bucket, Description: "kanade operator accounts and the token secret",
			History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("accounts bucket: %w", err)
	}
	return &Store{kv: kv}, nil
}

// load reads the document; an absent one is empty (revision 0). A
// document unchanged since the last read is not decoded again.
func (s *Store) load(ctx context.Context) (*document, uint64, error) {
	e, err := s.kv.Get(ctx, keyAccounts)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &document{Accounts: map[string]*Account{}, Groups: map[string]*Group{}}, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read accounts: %w", err)
	}
	s.mu.Lock()
	if s.cached != nil && s.rev == e.Revision() {
		d := s.cached
		s.mu.Unlock()
		return d, e.Revision(), nil
	}
	s.mu.Unlock()
	var d document
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		return nil, 0, fmt.Errorf("read accounts: %w", err)
	}
	if d.Accounts == nil {
		d.Accounts = map[string]*Account{}
	}
	if d.Groups == nil {
		d.Groups = map[string]*Group{}
	}
	s.mu.Lock()
	s.cached, s.rev = &d, e.Revision()
	s.mu.Unlock()
	return &d, e.Revision(), nil
}

// Get returns a copy of one account, or nil.
func (s *Store) Get(ctx context.Context, username string) (*Account, error) {
	d, _, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	a := d.Accounts[username]
	if a == nil {
		return nil, nil
	}
	c := *a
	return &c, nil
}

// List returns copies of every account, by username.
func (s *Store) List(ctx context.Context) ([]Account, error) {
	d, _, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Account, 0, len(d.Accounts))
	for _, a := range d.Accounts {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b Account) int { return strings.Compare(a.Username, b.Username) })
	return out, nil
}

// Any tells whether at least one account exists.
func (s *Store) Any(ctx context.Context) (bool, error) {
	d, _, err := s.load(ctx)
	if err != nil {
		return false, err
	}
	return len(d.Accounts) > 0, nil
}

// Update applies fn to a fresh copy of the document and stores it with a
// compare-and-set, retrying when another writer came first. fn's error
// aborts without writing.
func (s *Store) Update(ctx context.Context, fn func(accounts map[string]*Account, groups map[string]*Group) error) error {
	for attempt := 0; ; attempt++ {
		d, rev, err := s.load(ctx)
		if err != nil {
			return err
		}
		// A deep copy: the cached document is shared with readers.
		work := make(map[string]*Account, len(d.Accounts))
		for k, a := range d.Accounts {
			c := *a
			if a.AllowedFeatures != nil {
				f := slices.Clone(*a.AllowedFeatures)
				c.AllowedFeatures = &f
			}
			work[k] = &c
		}
		groups := make(map[string]*Group, len(d.Groups))
		for k, g := range d.Groups {
			c := *g
			c.Features = slices.Clone(g.Features)
			groups[k] = &c
		}
		if err := fn(work, groups); err != nil {
			return err
		}
		b, err := json.Marshal(document{Accounts: work, Groups: groups})
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = s.kv.Create(ctx, keyAccounts, b)
		} else {
			_, err = s.kv.Update(ctx, keyAccounts, b, rev)
		}
		if err == nil {
			return nil
		}
		if (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) && attempt < 20 {
			continue
		}
		return fmt.Errorf("write accounts: %w", err)
	}
}

// enabledAdmins counts the enabled admins.
func enabledAdmins(accts map[string]*Account) int {
	n := 0
	for _, a := range accts {
		if a.Role == api.TierAdmin && !a.Disabled {
			n++
		}
	}
	return n
}

// Secret is the HMAC key of tokens, shared by all nodes: made once, by the
// first node that needs it, and read by the others.
func (s *Store) Secret(ctx context.Context) ([]byte, error) {
	for range 3 {
		e, err := s.kv.Get(ctx, keySecret)
		if err == nil {
			return e.Value(), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("read token secret: %w", err)
		}
		b := make([]byte, 32)
		rand.Read(b)
		secret := []byte(hex.EncodeToString(b))
		if _, err := s.kv.Create(ctx, keySecret, secret); err == nil {
			return secret, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, fmt.Errorf("store token secret: %w", err)
		}
	}
	return nil, errors.New("token secret: no stable value")
}

// ResetPassword sets a password from the host (kanade admin): the account
// must change it at its next login, and is enabled again. With create, a
// missing account is made, as an admin.
func (s *Store) ResetPassword(ctx context.Context, username, password string, create bool, now time.Time) (created bool, err error) {
	if err := checkPassword(password); err != nil {
		return false, err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return false, err
	}
	err = s.Update(ctx, func(accts map[string]*Account, _ map[string]*Group) error {
		a := accts[username]
		created = a == nil
		if a == nil {
			if !create {
				return api.NotFound("no such account")
			}
			a = &Account{Username: username, Role: api.TierAdmin, CreatedAt: now}
			accts[username] = a
		}
		a.PasswordHash, a.MustChangePW, a.Disabled, a.UpdatedAt = hash, true, false, now
		return nil
	})
	return created, err
}
