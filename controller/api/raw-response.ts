/**
 * A raw HTTP/1.1 error response in our wire format, for sockets fastify does not answer itself
 * (client errors, refused WebSocket upgrades). Always `Connection: close`.
 */
import type {MeshError} from '../../shared/errors.js'

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  429: 'Too Many Requests',
}

export function rawErrorResponse(error: MeshError, extraHeaders = ''): string {
  const body = JSON.stringify(error.toWire())
  return (
    `HTTP/1.1 ${error.status} ${REASONS[error.status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${extraHeaders}\r\n${body}`
  )
}
