import {describe, expect, it} from 'vitest'
import {mfaEnableText} from './session.js'

describe('mfaEnableText', () => {
  it('draws a QR code of the otpauth URI and prints the URI and secret beside it', async () => {
    const uri =
      'otpauth://totp/mesh:alice?issuer=mesh&secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30'
    const text = await mfaEnableText({secret: 'JBSWY3DPEHPK3PXP', uri})
    const lines = text.split('\n')
    // qrcode-terminal's small mode: two modules per character with half-block glyphs.
    const qrLines = lines.filter((l) => /[▀▄█]/.test(l))
    expect(qrLines.length).toBeGreaterThan(10)
    expect(new Set(qrLines.map((l) => l.length)).size).toBe(1)
    expect(text).toContain(`  ${uri}`)
    expect(text).toContain('secret: JBSWY3DPEHPK3PXP')
  })
})
