package main

import (
	"fmt"
	"os"
	"time"

	"github.com/kanade-go/kanade/node"
	"github.com/kanade-go/kanade/signing"
)

// signingFlags declares serve's command signing flags. Their environment
// twins are upstream's own settings (KANADE_COMMAND_SIGNING_KEY,
// KANADE_COMMAND_SIGNING_KID), so an upstream install's key carries over.
func signingFlags(f *flags) func(*node.Options) error {
	key := f.String("command-signing-key", "", "base64 of the 32-byte Ed25519 seed Commands are signed with (prefer the environment or a key file: a flag shows in ps)")
	keyFile := f.String("command-signing-key-file", "", "file holding the base64 seed instead of --command-signing-key (kanade keygen --key-file writes one)")
	kid := f.String("command-signing-kid", "", "id of the signing key, sent in Kanade-Sig-Kid; set with the key, or neither")
	envelope := f.String("command-envelope", "off", "off: bare Commands only, as upstream; v2: kanade.command.v2 envelopes on commands.pc.{pc} to agents that report v2 (needs a key)")
	ttl := f.Duration("command-envelope-ttl", signing.DefaultEnvelopeTTL, "how long a v2 envelope stays good after it is sent (expires_at; 1m to 7d)")
	return func(o *node.Options) error {
		s, err := signing.Config{Key: *key, KeyFile: *keyFile, Kid: *kid}.Load()
		if err != nil {
			return err
		}
		o.Signer = s
		if st, err := os.Stat(*keyFile); err == nil && st.Mode().Perm()&0o077 != 0 && o.Logger != nil {
			o.Logger.Warn("command signing key file is readable by others than its owner: chmod 600 it", "file", *keyFile, "mode", st.Mode().Perm().String())
		}
		switch *envelope {
		case "off":
		case "v2":
			if s == nil {
				return fmt.Errorf("--command-envelope v2 needs a signing key: agents refuse an unsigned envelope")
			}
			if o.Envelopes, err = signing.NewEnvelopes(*ttl); err != nil {
				return fmt.Errorf("--command-envelope-ttl: %w", err)
			}
		default:
			return fmt.Errorf("--command-envelope must be off or v2, not %q", *envelope)
		}
		return nil
	}
}

// demoSigner is the key the demo signs with when none is configured: a
// fresh one per start, trusted by the demo agents only.
func demoSigner(o *node.Options) error {
	if o.Signer != nil {
		return nil
	}
	s, _, err := signing.Generate("demo-" + time.Now().UTC().Format("20060102"))
	if err != nil {
		return err
	}
	o.Signer = s
	return nil
}
