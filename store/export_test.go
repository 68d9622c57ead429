package store

// RefreshSQL are the statements Refresh runs, by name, with how many
// parameters each takes: growth_test.go explains them as sent.
var RefreshSQL = map[string]struct {
	SQL    string
	Params int
}{"rotate": {rotateSQL, 4}, "check": {refreshCheckSQL, 2}}
