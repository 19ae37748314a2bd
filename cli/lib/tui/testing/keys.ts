/**
 * A key press for ink-testing-library renders: types the key and resolves with the frame Ink
 * draws in answer, so a test waits on what the key causes, never on time. Only for keys that
 * change what is shown (a key whose effect is a call, like q, is awaited through that call).
 */
interface Rendered {
  stdin: {write(data: string): void}
  stdout: {write: (frame: string) => void}
}

export function press(r: Rendered, key: string): Promise<string> {
  return new Promise((resolve) => {
    const write = r.stdout.write
    r.stdout.write = (frame: string) => {
      write(frame)
      r.stdout.write = write
      resolve(frame)
    }
    r.stdin.write(key)
  })
}
