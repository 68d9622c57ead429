package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"authd/token"
)

// keygenCmd is `authd keygen --alg ES256 --out DIR`: a new private key in
// DIR/<kid>.pem, readable by its owner only, DIR made (mode 0700) if
// missing.
func keygenCmd(fs *flag.FlagSet, c *cli) action {
	alg := fs.String("alg", token.ES256, "ES256, EdDSA or RS256")
	out := fs.String("out", "", "directory to write the key to (required)")
	return func(_ context.Context, _ []string) error {
		if *out == "" {
			return &usageError{"keygen", "--out DIR is required"}
		}
		return keygen(*alg, *out, c.stdout)
	}
}

func keygen(alg, out string, stdout io.Writer) error {
	k, err := token.GenerateKey(alg, time.Now())
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	b, err := k.MarshalPEM()
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	// Missing directories, parents included, are made for the owner
	// only. An existing one that group or others may write is refused, as
	// serve would refuse it: better told now than at the next start.
	if err := os.MkdirAll(out, 0o700); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if err := token.CheckKeyDir(out); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	path := filepath.Join(out, k.ID+".pem")
	// O_EXCL: never overwrite a key that may still be signing.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("keygen: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keygen: write %s: %w", path, err)
	}
	fmt.Fprintf(stdout, "kid: %s\nalg: %s\nfile: %s\n", k.ID, k.Alg, path)
	return nil
}

// jwksCmd is `authd jwks`: the public keys of AUTHD_SIGNING_KEYS_DIR (or
// --dir) as a JWKS, to paste into PostgREST's jwt-secret.
func jwksCmd(fs *flag.FlagSet, c *cli) action {
	dir := fs.String("dir", "", "key directory (default: $AUTHD_SIGNING_KEYS_DIR)")
	return func(_ context.Context, _ []string) error {
		if *dir == "" {
			*dir = c.getenv("AUTHD_SIGNING_KEYS_DIR")
		}
		return jwks(*dir, c.stdout)
	}
}

func jwks(dir string, stdout io.Writer) error {
	if dir == "" {
		return errors.New("jwks: set AUTHD_SIGNING_KEYS_DIR or pass --dir DIR")
	}
	keys, signing, err := token.LoadKeyDir(dir)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	if len(keys) == 0 {
		return fmt.Errorf("jwks: no keys in %s (make one with: authd keygen --alg ES256 --out %s)", dir, dir)
	}
	ks, err := token.NewKeySet(nil, keys, signing)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	b, err := ks.JWKS()
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}
