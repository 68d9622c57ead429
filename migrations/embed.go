// Package migrations holds authd's goose SQL migrations. The .sql files are
// plain goose files: the stock CLI runs them as they are
// (goose -dir migrations postgres "$DATABASE_URL" up), and authd embeds the
// same files for `authd migrate`. The CLI ignores this .go file.
package migrations

import "embed"

// FS is the embedded directory of migration files.
//
//go:embed *.sql
var FS embed.FS
