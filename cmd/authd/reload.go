package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"authd/token"
)

// reloadDebounce gathers the burst of events one secret update makes
// (Kubernetes swaps a ..data symlink; editors write, rename and chmod).
const reloadDebounce = 200 * time.Millisecond

// watchKeys reloads the key set whenever hup fires (SIGHUP) or the secret
// file or key directory changes, until ctx ends. A set that fails to load
// is logged and the keys in use stay: a half-written file never logs
// everyone out.
func watchKeys(ctx context.Context, cfg config, tokens *token.Issuer, hup <-chan os.Signal, log *slog.Logger) {
	var dirs []string
	if cfg.SigningKeysDir != "" {
		dirs = append(dirs, cfg.SigningKeysDir)
	}
	if cfg.Secret.file != "" {
		dirs = append(dirs, filepath.Dir(cfg.Secret.file))
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	if len(dirs) > 0 {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			log.Warn("cannot watch key files; reload with SIGHUP", "err", err)
		} else {
			defer w.Close()
			for _, d := range dirs {
				if err := w.Add(d); err != nil {
					log.Warn("cannot watch key directory; reload with SIGHUP", "dir", d, "err", err)
				}
			}
			events, errs = w.Events, w.Errors
		}
	}

	reload := func(why string) {
		ks, err := cfg.keySet()
		if err != nil {
			log.Error("key reload failed; keeping the keys in use", "trigger", why, "err", err)
			return
		}
		tokens.SetKeys(ks)
		log.Info("keys reloaded", "trigger", why, "signing_kid", ks.SigningKeyID(), "algorithms", ks.Algorithms())
	}

	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload("SIGHUP")
		case <-events:
			debounce = time.After(reloadDebounce)
		case err := <-errs:
			log.Warn("watching key files", "err", err)
		case <-debounce:
			debounce = nil
			reload("file change")
		}
	}
}
