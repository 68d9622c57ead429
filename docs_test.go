package authd_test

// Lists the docs and the Makefile keep by hand, checked against what the
// code has: fuzz targets, migrations.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// `make fuzz` fuzzes every fuzz target: scripts/fuzz.sh finds them, and
// its list must be the one the Go parser finds here — a Fuzz function of
// one *testing.F parameter in any _test.go file. When the Makefile listed
// the targets by hand, five targets added later were never fuzzed.
func TestMakeFuzzRunsEveryTarget(t *testing.T) {
	var want []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".dev", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Fuzz") || !takesTestingF(fn) {
				continue
			}
			dir := "./" + filepath.ToSlash(filepath.Dir(path))
			if filepath.Dir(path) == "." {
				dir = "."
			}
			want = append(want, dir+" "+fn.Name.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	if len(want) == 0 {
		t.Fatal("the parser found no fuzz targets")
	}

	out, err := exec.Command("bash", "scripts/fuzz.sh", "--list").Output()
	if err != nil {
		t.Fatalf("scripts/fuzz.sh --list: %v", err)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("scripts/fuzz.sh --list:\n%s\nwant (the Go parser's):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// And `make fuzz` is that script, not a list of its own.
	mk, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	recipe := regexp.MustCompile(`(?m)^fuzz:.*\n((?:\t.*\n)+)`).FindSubmatch(mk)
	if recipe == nil || !strings.Contains(string(recipe[1]), "scripts/fuzz.sh") || strings.Contains(string(recipe[1]), "-fuzz ") {
		t.Errorf("the Makefile's fuzz recipe must run scripts/fuzz.sh and nothing of its own; it is:\n%q", recipe)
	}
}

// takesTestingF reports whether fn's one parameter is a *testing.F.
func takesTestingF(fn *ast.FuncDecl) bool {
	p := fn.Type.Params.List
	if len(p) != 1 || len(p[0].Names) > 1 {
		return false
	}
	star, ok := p[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "testing" && sel.Sel.Name == "F"
}

// docs/migrations.md has a row for every migration goose runs, so an
// operator reading `authd migrate status` finds what each one changes.
func TestEveryMigrationIsDocumented(t *testing.T) {
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v, %d files", err, len(files))
	}
	doc, err := os.ReadFile("docs/migrations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !strings.Contains(string(doc), "| `"+filepath.Base(f)+"` |") {
			t.Errorf("%s has no row in docs/migrations.md's table", f)
		}
	}
}
