package accounts

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
)

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") || len(strings.Split(h, "$")) != 6 {
		t.Fatalf("not upstream's PHC form: %s", h)
	}
	if ok, err := CheckPassword(h, "correct horse"); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if ok, _ := CheckPassword(h, "wrong horse"); ok {
		t.Fatal("wrong password accepted")
	}
	// The parameters come from the string: a hash made with others checks.
	other := "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$" // key filled below
	key := strings.Split(mustHash(t, "pw", []byte("saltsaltsalt"), 1, 8, 1), "$")[5]
	if ok, err := CheckPassword(other+key, "pw"); !ok || err != nil {
		t.Fatalf("other parameters: %v %v", ok, err)
	}
	if _, err := CheckPassword("$2b$10$bcrypt", "pw"); err == nil {
		t.Fatal("a bcrypt hash read as argon2id")
	}
}

func mustHash(t *testing.T, pw string, salt []byte, tm, m uint32, p uint8) string {
	t.Helper()
	return phc(pw, salt, tm, m, p)
}

// The throttle's numbers are upstream's, shared through KV.
func TestThrottle(t *testing.T) {
	n := nodetest.Start(t)
	js, _ := jetstream.New(n.Conn(t))
	ctx := context.Background()
	th, err := openThrottle(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 4 {
		th.fail(ctx, "alice", "10.0.0.1", now)
		if d, _ := th.wait(ctx, "alice", "10.0.0.1", now); d != 0 {
			t.Fatalf("locked after %d failures", i+1)
		}
	}
	th.fail(ctx, "alice", "10.0.0.1", now)
	d, _ := th.wait(ctx, "alice", "10.0.0.2", now.Add(time.Minute))
	if d != 14*time.Minute || retryAfter(d) != 841 {
		t.Fatalf("lock from another address: %v", d)
	}
	// An expired lock: one more failure starts a new streak, no lock.
	later := now.Add(16 * time.Minute)
	th.fail(ctx, "alice", "10.0.0.3", later)
	if d, _ := th.wait(ctx, "alice", "10.0.0.3", later); d != 0 {
		t.Fatalf("re-locked by one failure after expiry: %v", d)
	}
	// 30 failures from one address in a window, whoever they name.
	for i := range 30 {
		th.fail(ctx, "u"+string(rune('a'+i%26))+string(rune('a'+i/26)), "10.9.9.9", later)
	}
	if d, _ := th.wait(ctx, "newcomer", "10.9.9.9", later.Add(10*time.Second)); d != 50*time.Second {
		t.Fatalf("address window: %v", d)
	}
	if d, _ := th.wait(ctx, "newcomer", "10.9.9.9", later.Add(61*time.Second)); d != 0 {
		t.Fatalf("window not over: %v", d)
	}
	// Success clears the streak.
	th.fail(ctx, "bob", "x", later)
	th.succeed(ctx, "bob")
	for range 4 {
		th.fail(ctx, "bob", "x", later)
	}
	if d, _ := th.wait(ctx, "bob", "y", later); d != 0 {
		t.Fatal("success did not clear the streak")
	}
}
