// Package signing signs the Commands the backend publishes with an Ed25519
// key, as upstream's backend does, so that agents which enforce signatures
// run them (headers Kanade-Sig, Kanade-Sig-Kid, Kanade-Sig-Alg, Kanade-Sig-At),
// and verifies them as an upstream agent does (the simulated agents use
// that side: Keyring, Verify, the v2 envelope and the refusal result).
//
// The signed bytes are the 8-byte big-endian millisecond timestamp
// followed by the message body exactly as sent; nothing is canonicalised.
// An unsigned message carries no Kanade-Sig* header at all.
package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Header names and the one algorithm, spelled as upstream sends them.
const (
	HeaderSig = "Kanade-Sig"
	HeaderKid = "Kanade-Sig-Kid"
	HeaderAlg = "Kanade-Sig-Alg"
	HeaderAt  = "Kanade-Sig-At"
	Alg       = "ed25519"
)

// Settings upstream reads the key from; serve's flags have them as
// environment twins.
const (
	EnvKey = "KANADE_COMMAND_SIGNING_KEY"
	EnvKid = "KANADE_COMMAND_SIGNING_KID"
)

// Signer signs Command messages. A nil *Signer signs nothing: without a key
// the backend publishes unsigned, exactly as upstream does.
type Signer struct {
	kid  string
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

// New makes a Signer from the 32-byte Ed25519 seed (upstream's stored
// private key, not Go's 64-byte form) and its key id.
func New(seed []byte, kid string) (*Signer, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key: want a %d-byte Ed25519 seed, got %d bytes", ed25519.SeedSize, len(seed))
	}
	kid, err := cleanKid(kid)
	if err != nil {
		return nil, err
	}
	priv := ed25519.NewKeyFromSeed(seed)
	return &Signer{kid: kid, priv: priv, pub: priv.Public().(ed25519.PublicKey)}, nil
}

// Generate mints a new key: the Signer and the seed in upstream's encoding
// (base64 standard, padded), the value of KANADE_COMMAND_SIGNING_KEY.
func Generate(kid string) (*Signer, string, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, "", fmt.Errorf("generate signing key: %w", err)
	}
	s, err := New(seed, kid)
	if err != nil {
		return nil, "", err
	}
	return s, base64.StdEncoding.EncodeToString(seed), nil
}

// DefaultKid is the key id keygen proposes: date-stamped, as upstream's
// examples are (backend-20260728).
func DefaultKid(t time.Time) string { return "backend-" + t.UTC().Format("20060102") }

// ParseSeed decodes KANADE_COMMAND_SIGNING_KEY: base64 standard with
// padding of the 32-byte seed (surrounding white space is ignored).
func ParseSeed(b64 string) ([]byte, error) {
	seed, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, fmt.Errorf("signing key: not base64 (standard, padded): %w", err)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key: want the %d-byte Ed25519 seed, got %d bytes", ed25519.SeedSize, len(seed))
	}
	return seed, nil
}

// cleanKid trims a key id and checks it can travel as a header value.
func cleanKid(kid string) (string, error) {
	kid = strings.TrimSpace(kid)
	if kid == "" {
		return "", errors.New("signing key id: empty")
	}
	for _, c := range kid {
		if c < 0x20 || c > 0x7e {
			return "", fmt.Errorf("signing key id %q: only printable ASCII can travel in a header", kid)
		}
	}
	return kid, nil
}

// Config is where serve finds the key: the seed itself (upstream's
// KANADE_COMMAND_SIGNING_KEY), or a file holding it, and the key id
// (KANADE_COMMAND_SIGNING_KID). All empty means no key.
type Config struct {
	Key     string
	KeyFile string
	Kid     string
}

// Load returns the configured Signer, or nil (and no error) when no key is
// configured. A key without a kid, a kid without a key, both a key and a
// key file, or a key that does not decode is an error: a node must not
// start signing with half a configuration, nor silently not sign.
func (c Config) Load() (*Signer, error) {
	key, file, kid := strings.TrimSpace(c.Key), strings.TrimSpace(c.KeyFile), strings.TrimSpace(c.Kid)
	if key != "" && file != "" {
		return nil, errors.New("command signing: set the key or the key file, not both")
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("command signing key file: %w", err)
		}
		if key = strings.TrimSpace(string(b)); key == "" {
			return nil, fmt.Errorf("command signing key file %s is empty", file)
		}
	}
	switch {
	case key == "" && kid == "":
		return nil, nil
	case key == "":
		return nil, fmt.Errorf("command signing: %s is set but there is no key (%s or a key file): set both or neither", EnvKid, EnvKey)
	case kid == "":
		return nil, fmt.Errorf("command signing: a key is set but %s is not: set both or neither", EnvKid)
	}
	seed, err := ParseSeed(key)
	if err != nil {
		return nil, fmt.Errorf("command signing: %w", err)
	}
	return New(seed, kid)
}

// Kid is the key id sent in Kanade-Sig-Kid ("" for a nil Signer).
func (s *Signer) Kid() string {
	if s == nil {
		return ""
	}
	return s.kid
}

// PublicKey is the public half, base64 standard of the raw 32 bytes, as
// agents' keyrings hold it ("" for a nil Signer).
func (s *Signer) PublicKey() string {
	if s == nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(s.pub)
}

// Fingerprint is the public key's fingerprint, as upstream shows it and
// agents report it in command_keys ("" for a nil Signer).
func (s *Signer) Fingerprint() string {
	if s == nil {
		return ""
	}
	return Fingerprint(s.pub)
}

// Fingerprint is lower-case hex of the first 8 bytes of SHA-256 over the
// raw 32-byte public key.
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// KeyringEntry is the entry agents add to their keyring to trust this key.
func (s *Signer) KeyringEntry() KeyringEntry {
	return KeyringEntry{Kid: s.Kid(), PublicKey: s.PublicKey(), Label: "backend"}
}

// Sign adds the signature headers to m, over m.Data as it is now: call it
// last, right before publishing, once per publish (a retry is a new
// publish: sign it again).
func (s *Signer) Sign(m *nats.Msg) error {
	if s == nil {
		return nil
	}
	return s.SignAt(m, time.Now())
}

// SignAt signs m as sent at t (millisecond precision).
func (s *Signer) SignAt(m *nats.Msg, t time.Time) error {
	if s == nil {
		return nil
	}
	at := t.UnixMilli()
	sig := ed25519.Sign(s.priv, signedBytes(at, m.Data))
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Header.Set(HeaderSig, base64.StdEncoding.EncodeToString(sig))
	m.Header.Set(HeaderKid, s.kid)
	m.Header.Set(HeaderAlg, Alg)
	m.Header.Set(HeaderAt, strconv.FormatInt(at, 10))
	return nil
}

// signedBytes is what a signature covers: at as 8 bytes big-endian, then
// the body exactly.
func signedBytes(at int64, body []byte) []byte {
	b := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint64(b, uint64(at))
	return append(b, body...)
}
