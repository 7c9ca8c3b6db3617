package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/kanade-go/kanade/signing"
)

// keygen runs `kanade keygen`: mints a command signing key and prints its
// kid, public key, fingerprint, the keyring entry agents take, and the
// settings every backend node needs.
func keygen(args []string, stdout io.Writer) error {
	// No environment twins: a stray KANADE_KID must not name a new key.
	f := flag.NewFlagSet("keygen", flag.ContinueOnError)
	kid := f.String("kid", signing.DefaultKid(time.Now()), "id of the new key")
	keyFile := f.String("key-file", "", "write the secret seed to this file (mode 0600) instead of printing it")
	rotate := f.Bool("rotate", false, "replace an existing --key-file (a rotation: agents must trust the new key first, see the README)")
	if err := (&flags{FlagSet: f}).parse(args); err != nil { // -h: usage on stdout, exit 0
		return err
	}
	s, seed, err := signing.Generate(*kid)
	if err != nil {
		return err
	}
	if *keyFile != "" {
		if err := writeSecret(*keyFile, seed+"\n", *rotate); err != nil {
			return err
		}
	}
	entry, err := json.Marshal([]signing.KeyringEntry{s.KeyringEntry()})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kid          %s\npublic key   %s\nfingerprint  %s\n\n", s.Kid(), s.PublicKey(), s.Fingerprint())
	fmt.Fprintf(stdout, "Keyring for the agents (add the entry to their command keys before the backend switches):\n%s\n\n", entry)
	fmt.Fprintln(stdout, "Backend settings (the same on every node; the key is secret):")
	if *keyFile != "" {
		fmt.Fprintf(stdout, "%s_FILE=%s\n", signing.EnvKey, *keyFile)
	} else {
		fmt.Fprintf(stdout, "%s=%s\n", signing.EnvKey, seed)
	}
	fmt.Fprintf(stdout, "%s=%s\n", signing.EnvKid, s.Kid())
	return nil
}

// writeSecret writes data to path readable by its owner only; an existing
// file is replaced only with force.
func writeSecret(path, data string, force bool) error {
	flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("key file %s exists: pass --rotate to replace it (agents must trust the new key first)", path)
	}
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("key file: %w", err)
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		return fmt.Errorf("key file: %w", err)
	}
	return f.Close()
}
