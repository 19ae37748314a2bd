/**
 * The OpenAPI 3.1 document, generated from the same zod schemas the server validates with
 * (ROUTES in shared/protocol/control-api.ts): request parts as `io: 'input'` (what a client may
 * send, defaults optional), replies as output.
 */
import {z} from 'zod'
import {ROUTES, type RouteDef} from '../../shared/protocol/control-api.js'
import {PROTOCOL_VERSION} from '../../shared/protocol/version.js'

type JsonSchema = Record<string, unknown>

const toSchema = (schema: z.ZodType, io: 'input' | 'output'): JsonSchema => {
  const {$schema: _drop, ...rest} = z.toJSONSchema(schema, {
    io,
    unrepresentable: 'any',
    target: 'draft-2020-12',
  })
  return rest as JsonSchema
}

const ErrorSchema: JsonSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message', 'hint'],
      properties: {
        code: {type: 'string'},
        message: {type: 'string'},
        hint: {type: 'string'},
        detail: {},
        requestId: {type: 'string'},
      },
    },
  },
}

function parameters(schema: z.ZodObject | undefined, where: 'path' | 'query'): JsonSchema[] {
  if (!schema) return []
  const js = toSchema(schema, 'input') as {properties?: Record<string, JsonSchema>; required?: string[]}
  return Object.entries(js.properties ?? {}).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' || (js.required ?? []).includes(name),
    schema: s,
    ...(typeof s.description === 'string' ? {description: s.description} : {}),
  }))
}

export function buildOpenApi(serverUrl?: string): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {}
  for (const [id, r] of Object.entries(ROUTES) as [string, RouteDef][]) {
    const p = r.path.replace(/:([A-Za-z]+)/g, '{$1}')
    const op: JsonSchema = {
      operationId: id,
      summary: r.summary,
      parameters: [...parameters(r.params, 'path'), ...parameters(r.query, 'query')],
      responses: {
        [String(r.status)]: {
          description: r.summary,
          content: {'application/json': {schema: toSchema(r.response, 'output')}},
        },
        default: {description: 'an error', content: {'application/json': {schema: ErrorSchema}}},
      },
      ...(r.auth === 'none' ? {security: []} : {}),
      'x-mesh-auth': r.auth,
      ...(r.permission ? {'x-mesh-permission': r.permission} : {}),
    }
    if (r.body) {
      op.requestBody = {
        required: true,
        content: {'application/json': {schema: toSchema(r.body, 'input')}},
      }
    }
    ;(paths[p] ??= {})[r.method.toLowerCase()] = op
  }
  return {
    openapi: '3.1.0',
    info: {title: 'mesh controller API', version: `${PROTOCOL_VERSION}`},
    ...(serverUrl ? {servers: [{url: serverUrl}]} : {}),
    components: {securitySchemes: {bearer: {type: 'http', scheme: 'bearer'}}},
    security: [{bearer: []}],
    paths,
  }
}
