// test/manifests/validate.mjs: validates Kubernetes objects against the schemas of the npm
// packages kubernetes-models (the Kubernetes OpenAPI) and @kubernetes-models/prometheus-operator
// (the Operator's CRDs), strictly: an unknown field anywhere is an error.
//
//   node validate.mjs [--lax] OBJECTS.json
//
// OBJECTS.json is a JSON array of {"source": "file#index", "object": {...}} (test/manifests.sh
// turns YAML into it with python3-yaml). Prints one line per object, "ok SOURCE KIND/NAME" or
// "error SOURCE KIND/NAME: MESSAGE", and exits 1 if any object is in error. NODE_PATH-style
// resolution: run it with the packages installed in build/npm (KZN_NPM=build/npm/node_modules).
//
// Why "strictly" needs work here: the models' validate() runs ajv code generated from the
// OpenAPI schemas, which do not say additionalProperties: false, so an unknown field (a typo
// such as `runAsUsr`) passes. The kubectl and the API server reject such a field (strict field
// validation), so this validator does too. The generated code is the schema: it reads every
// property the schema declares (`data.runAsUser`) and enumerates the keys of a map
// (additionalProperties: {...}, e.g. labels). So the object is handed to validate() wrapped in
// a Proxy that records, for every JSON object in it, which property names the validator
// looked at and whether it listed the keys. A key that is present but that the validator never
// looked at, in an object whose declared properties it did look at, is a field the schema does
// not declare. An object the validator never looked into at all is a free-form field (the
// schema says only "object") and is left alone. `--lax` skips this and shows what the models
// accept on their own (test/manifests.sh checks that it lets an unknown field through, which
// is the reason for the Proxy).
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join, resolve } from "node:path";

const args = process.argv.slice(2);
const lax = args[0] === "--lax";
if (lax) args.shift();
if (args.length !== 1) {
  console.error("usage: node validate.mjs [--lax] OBJECTS.json");
  process.exit(2);
}
const modules = resolve(process.env.KZN_NPM || "node_modules");

// The module that holds the models of an apiVersion, or null for an API group neither package
// knows.
function modulePath(apiVersion) {
  if (typeof apiVersion !== "string" || !/^([a-z0-9.-]+\/)?v[0-9]+((alpha|beta)[0-9]+)?$/.test(apiVersion))
    return null;
  if (apiVersion.startsWith("monitoring.coreos.com/"))
    return join(modules, "@kubernetes-models/prometheus-operator", apiVersion, "index.js");
  return join(modules, "kubernetes-models", apiVersion, "index.js");
}

async function modelFor(apiVersion, kind) {
  const path = modulePath(apiVersion);
  if (!path) return { error: `unknown apiVersion ${JSON.stringify(apiVersion)}` };
  let mod;
  try {
    mod = await import(pathToFileURL(path).href);
  } catch {
    return { error: `unknown apiVersion ${JSON.stringify(apiVersion)}` };
  }
  const model = typeof kind === "string" ? mod[kind] : undefined;
  if (typeof model !== "function" || model.kind !== kind || model.apiVersion !== apiVersion ||
      typeof model.prototype.validate !== "function")
    return { error: `unknown kind ${JSON.stringify(kind)} in ${apiVersion}` };
  return { model };
}

// track(value, path, seen) wraps every object and array of a JSON value in a recording Proxy.
function track(value, path, seen) {
  if (value === null || typeof value !== "object") return value;
  const rec = { path, value, read: new Set(), listed: false };
  seen.push(rec);
  const children = new Map();
  const child = (key) => {
    if (!children.has(key)) {
      const p = Array.isArray(value) ? `${path}[${key}]` : `${path}.${key}`;
      children.set(key, track(value[key], p, seen));
    }
    return children.get(key);
  };
  return new Proxy(value, {
    get(target, key, receiver) {
      if (typeof key !== "string") return Reflect.get(target, key, receiver);
      rec.read.add(key);
      return Object.prototype.hasOwnProperty.call(target, key) ? child(key) : Reflect.get(target, key, receiver);
    },
    has(target, key) {
      if (typeof key === "string") rec.read.add(key);
      return Reflect.has(target, key);
    },
    getOwnPropertyDescriptor(target, key) {
      if (typeof key === "string") rec.read.add(key);
      const d = Reflect.getOwnPropertyDescriptor(target, key);
      if (d && "value" in d && typeof key === "string") d.value = child(key);
      return d;
    },
    ownKeys(target) {
      rec.listed = true;
      return Reflect.ownKeys(target);
    },
  });
}

function unknownFields(seen) {
  const out = [];
  for (const r of seen) {
    if (Array.isArray(r.value) || r.listed || r.read.size === 0) continue;
    for (const key of Object.keys(r.value)) if (!r.read.has(key)) out.push(`${r.path}.${key}`);
  }
  return out;
}

const items = JSON.parse(readFileSync(args[0], "utf8"));
let failed = 0;
for (const { source, object } of items) {
  const kind = object && object.kind;
  const name = `${kind}/${object && object.metadata && object.metadata.name}`;
  const errors = [];
  if (object === null || typeof object !== "object" || Array.isArray(object)) {
    errors.push("not an object");
  } else {
    const { model, error } = await modelFor(object.apiVersion, object.kind);
    if (error) errors.push(error);
    else {
      const seen = [];
      const subject = lax ? object : track(object, "", seen);
      try {
        model.prototype.validate.call(subject);
      } catch (e) {
        errors.push(`schema: ${e.message}`);
      }
      if (!lax) {
        const unknown = unknownFields(seen);
        if (unknown.length) errors.push(`unknown field ${unknown.map((f) => f.replace(/^\./, "")).join(", ")}`);
        if (!seen.length || seen[0].read.size === 0) errors.push("the validator did not read the object");
      }
    }
  }
  if (errors.length) {
    failed++;
    console.log(`error ${source} ${name}: ${errors.join("; ")}`);
  } else {
    console.log(`ok ${source} ${name}`);
  }
}
process.exit(failed ? 1 : 0);
