package accounts

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/kanade-go/kanade/services/api"
)

// Upstream's argon2id parameters (the argon2 crate's defaults): v19,
// 19456 KiB, 2 passes, 1 lane, 16-byte salt, 32-byte hash.
const (
	argonMemory  = 19456
	argonTime    = 2
	argonThreads = 1
	argonSalt    = 16
	argonKeyLen  = 32
)

// MinPassword is the shortest password accepted, in Unicode characters.
const MinPassword = 8

var b64 = base64.RawStdEncoding

// HashPassword is the argon2id PHC string of password with a new salt.
func HashPassword(password string) (string, error) {
	salt := make([]byte, argonSalt)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return phc(password, salt, argonTime, argonMemory, argonThreads), nil
}

// phc is the PHC string of password with these salt and parameters.
func phc(password string, salt []byte, t, m uint32, p uint8) string {
	key := argon2.IDKey([]byte(password), salt, t, m, p, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, m, t, p,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

// CheckPassword tells whether password matches a PHC string, with the
// parameters the string names (so hashes made by upstream verify too).
func CheckPassword(phc, password string) (bool, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("password hash: not argon2id")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, fmt.Errorf("password hash: version %q", parts[2])
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 {
		return false, fmt.Errorf("password hash: parameters %q", parts[3])
	}
	if m > 1<<21 || t > 64 {
		return false, fmt.Errorf("password hash: parameters %q too large", parts[3])
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("password hash: salt: %w", err)
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, fmt.Errorf("password hash: key: %v", err)
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// checkPassword is upstream's length rule.
func checkPassword(pw string) error {
	if utf8.RuneCountInString(pw) < MinPassword {
		return api.BadRequest("password too short (min 8 chars)")
	}
	return nil
}
