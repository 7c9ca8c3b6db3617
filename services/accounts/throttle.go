package accounts

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Upstream's login throttle: 5 failures in a row lock a username for
// 15 minutes (from any address); an address may fail 30 times per 60 s.
const (
	userFailures = 5
	userLock     = 15 * time.Minute
	addrFailures = 30
	addrWindow   = 60 * time.Second
)

// ThrottleBucket keeps the failure counts, shared by every node (upstream
// keeps them in one process's memory; here any node may answer a login,
// so the count must be common). Entries age out on their own.
const ThrottleBucket = "login_throttle"

// throttle counts failed logins.
type throttle struct {
	kv jetstream.KeyValue
}

// failures is one key's state: a username's streak and lock, or an
// address's window.
type failures struct {
	Count int       `json:"count"`
	Start time.Time `json:"start,omitzero"` // an address's window began
	Until time.Time `json:"until,omitzero"` // a username is locked until
}

func openThrottle(ctx context.Context, js jetstream.JetStream, replicas int) (*throttle, error) {
	kv, err := js.KeyValue(ctx, ThrottleBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: ThrottleBucket, Description: "kanade failed logins (the login throttle)",
			History: 1, TTL: userLock + time.Minute, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, ThrottleBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("login throttle bucket: %w", err)
	}
	return &throttle{kv: kv}, nil
}

func userKey(u string) string { return "u." + base64.RawURLEncoding.EncodeToString([]byte(u)) }
func addrKey(a string) string { return "a." + base64.RawURLEncoding.EncodeToString([]byte(a)) }

func (t *throttle) get(ctx context.Context, key string) (failures, uint64, error) {
	e, err := t.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return failures{}, 0, nil
	}
	if err != nil {
		return failures{}, 0, err
	}
	var f failures
	if json.Unmarshal(e.Value(), &f) != nil {
		return failures{}, e.Revision(), nil
	}
	return f, e.Revision(), nil
}

// wait is how long user from addr must wait before trying again; 0 = go.
// Username lock first, then the address window.
func (t *throttle) wait(ctx context.Context, user, addr string, now time.Time) (time.Duration, error) {
	u, _, err := t.get(ctx, userKey(user))
	if err != nil {
		return 0, err
	}
	if now.Before(u.Until) {
		return u.Until.Sub(now), nil
	}
	a, _, err := t.get(ctx, addrKey(addr))
	if err != nil {
		return 0, err
	}
	if now.Sub(a.Start) < addrWindow && a.Count >= addrFailures {
		return a.Start.Add(addrWindow).Sub(now), nil
	}
	return 0, nil
}

// change applies fn to key's state with a compare-and-set.
func (t *throttle) change(ctx context.Context, key string, fn func(*failures)) error {
	for range 20 {
		f, rev, err := t.get(ctx, key)
		if err != nil {
			return err
		}
		fn(&f)
		b, _ := json.Marshal(f)
		if rev == 0 {
			_, err = t.kv.Create(ctx, key, b)
		} else {
			_, err = t.kv.Update(ctx, key, b, rev)
		}
		if err == nil || !(errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
			return err
		}
	}
	return errors.New("login throttle: too much contention")
}

// fail counts a failed login.
func (t *throttle) fail(ctx context.Context, user, addr string, now time.Time) error {
	err := t.change(ctx, userKey(user), func(f *failures) {
		if !f.Until.IsZero() && !now.Before(f.Until) {
			*f = failures{} // an expired lock starts a new streak
		}
		f.Count++
		if f.Count >= userFailures {
			f.Until = now.Add(userLock)
		}
	})
	if err != nil {
		return err
	}
	return t.change(ctx, addrKey(addr), func(f *failures) {
		if now.Sub(f.Start) >= addrWindow {
			*f = failures{Start: now}
		}
		f.Count++
	})
}

// succeed clears the user's streak.
func (t *throttle) succeed(ctx context.Context, user string) error {
	if _, rev, err := t.get(ctx, userKey(user)); err != nil || rev == 0 {
		return err
	}
	return t.kv.Purge(ctx, userKey(user))
}

// retryAfter is upstream's Retry-After: remaining whole seconds + 1.
func retryAfter(d time.Duration) int { return int(d/time.Second) + 1 }
