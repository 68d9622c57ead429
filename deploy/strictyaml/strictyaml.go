// Package strictyaml decodes YAML config files the way the programs that
// read them refuse mistakes, for the tests of the files in deploy/: a
// misspelt, misplaced or wrongly capitalised key, a duplicate key or a
// value of the wrong type is an error instead of being ignored.
package strictyaml

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"sigs.k8s.io/yaml"
)

// Unmarshal decodes one YAML document into v through its json tags,
// refusing unknown fields and duplicate keys, and then checks the keys
// against v's field names once more: encoding/json matches them
// case-insensitively, Kubernetes and the gateways do not, so "Replicas:"
// would otherwise pass.
func Unmarshal(doc []byte, v any) error {
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return err
	}
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	var written any
	if err := json.Unmarshal(j, &written); err != nil {
		return err
	}
	return exactNames(written, reflect.TypeOf(v), "")
}

var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

// exactNames reports the first key of the decoded JSON value w that does
// not spell a field of t exactly. Keys of maps are data, not names; a type
// that decodes itself is left to its own rules.
func exactNames(w any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, _ := w.(map[string]any)
		fields := jsonFields(t)
		for k, v := range obj {
			ft, ok := fields[k]
			if !ok {
				for name := range fields {
					if strings.EqualFold(name, k) {
						return fmt.Errorf("%s.%s: field names are case-sensitive, want %q", path, k, name)
					}
				}
				return fmt.Errorf("%s.%s: not a field of %s", path, k, t)
			}
			if err := exactNames(v, ft, path+"."+k); err != nil {
				return err
			}
		}
	case reflect.Map:
		obj, _ := w.(map[string]any)
		for k, v := range obj {
			if err := exactNames(v, t.Elem(), fmt.Sprintf("%s[%q]", path, k)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		list, _ := w.([]any)
		for i, v := range list {
			if err := exactNames(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonFields maps the JSON names of t's fields to their types, as
// encoding/json names them: the json tag's name, else the field's, with
// the fields of an untagged embedded struct promoted unless t has its own.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	var promoted []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case tag == "-":
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			promoted = append(promoted, f.Type)
		case !f.IsExported():
		case name == "":
			fields[f.Name] = f.Type
		default:
			fields[name] = f.Type
		}
	}
	for _, e := range promoted {
		for name, ft := range jsonFields(e) {
			if _, ok := fields[name]; !ok {
				fields[name] = ft
			}
		}
	}
	return fields
}
