import { HttpServerResponse } from "@effect/platform"
import { SchemaAST as AST, type Schema } from "effect"

/**
 * Whether encoding with this schema gives back its input unchanged: no transformation or
 * declaration anywhere (no `DateTimeUtc`, `NumberFromString`, `optionalWith` defaults or
 * classes), only JSON's own kinds of values (and `Unknown`, passed on as it is), structs, arrays, tuples, unions and refinements
 * of them. Recursive (suspended) schemas are not looked into and count as changing.
 */
export const encodesAsItself = (ast: AST.AST): boolean => {
  switch (ast._tag) {
    case "StringKeyword":
    case "NumberKeyword":
    case "BooleanKeyword":
    case "Literal":
    case "Enums":
    case "TemplateLiteral":
    case "UnknownKeyword":
    case "AnyKeyword":
      return true
    case "Refinement":
      return encodesAsItself(ast.from)
    case "Union":
      return ast.types.every(encodesAsItself)
    case "TupleType":
      return ast.elements.every((e) => encodesAsItself(e.type)) && ast.rest.every((r) => encodesAsItself(r.type))
    case "TypeLiteral":
      return (
        ast.propertySignatures.every((p) => encodesAsItself(p.type)) &&
        ast.indexSignatures.every((s) => s.parameter._tag === "StringKeyword" && encodesAsItself(s.type))
      )
    default:
      return false
  }
}

/**
 * A 200 JSON response of a value already in `schema`'s encoded form, for a hot route's
 * handler (`handleRaw`) instead of HttpApi encoding it: for a 50-order page, the Schema
 * encoding allocated about a third of all the request's memory. The endpoint keeps `schema`
 * as its declared success, so the OpenAPI document is the same.
 *
 * What is skipped is what encoding would have done to such a value: checking its
 * refinements (an `Int` stays unchecked) and dropping keys the schema does not name. So the
 * value must be built field by field from typed columns, never a row or object spread.
 * Throws when the route is built if encoding `schema` would change a value.
 */
export const encodedJson = <A>(schema: Schema.Schema<A, A, never>) => {
  if (!encodesAsItself(schema.ast)) {
    throw new Error(`encodedJson: encoding ${String(schema.ast)} changes values; let HttpApi encode it`)
  }
  return (value: A): HttpServerResponse.HttpServerResponse => HttpServerResponse.unsafeJson(value)
}
