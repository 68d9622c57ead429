package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"authd/store"
	"authd/token"
)

// reloadDebounce gathers the burst of events one secret update makes
// (Kubernetes swaps a ..data symlink; editors write, rename and chmod).
const reloadDebounce = 200 * time.Millisecond

// watchSecrets reloads the key set whenever hup fires (SIGHUP) or the
// secret file or key directory changes, and reconnects to the database
// when DATABASE_URL_FILE changes (a rotated password), until ctx ends.
// What fails to load is logged and what is in use stays: a half-written
// file never logs everyone out or drops the database. Only a key file's
// removal always takes effect (config.reloadKeySet). keys is what the
// start-up reading found.
func watchSecrets(ctx context.Context, cfg config, keys keyState, tokens *token.Issuer, db *store.DB, hup <-chan os.Signal, log *slog.Logger) {
	var dirs []string
	if cfg.SigningKeysDir != "" {
		dirs = append(dirs, cfg.SigningKeysDir)
	}
	if cfg.Secret.file != "" {
		dirs = append(dirs, filepath.Dir(cfg.Secret.file))
	}
	urlFile := cfg.DatabaseURLFile
	if urlFile != "" {
		dirs = append(dirs, filepath.Dir(urlFile))
	}
	currentURL := cfg.DatabaseURL
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
		ks, next, problems := cfg.reloadKeySet(keys)
		// One line per problem, naming the file; errors never hold key
		// material.
		for _, err := range problems {
			log.Error("key reload problem", "trigger", why, "err", err)
		}
		if ks == nil {
			log.Error("key reload failed; keeping the keys in use", "trigger", why)
		} else {
			keys = next
			tokens.SetKeys(ks)
			log.Info("keys reloaded", "trigger", why, "signing_kid", ks.SigningKeyID(), "algorithms", ks.Algorithms(), "problems", len(problems))
		}
		if urlFile == "" {
			return
		}
		url, err := readDatabaseURLFile(urlFile)
		if err != nil || url == currentURL {
			if err != nil {
				log.Error("database URL reload failed; keeping the connection in use", "trigger", why, "err", err)
			}
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := db.Reconnect(rctx, url); err != nil {
			log.Error("database reconnect failed; keeping the connection in use", "trigger", why, "err", err)
			return
		}
		currentURL = url
		log.Info("database reconnected with the new DATABASE_URL_FILE", "trigger", why)
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
