import { z } from 'zod'
import { parseCidr } from './cidr.js'

/** Value schemas shared by the sections of the config schema. */

export const Port = z.number().int().min(1).max(65_535)
export const PositiveInt = z.number().int().positive()

/** A CIDR range ("203.0.113.0/24", "2001:db8::/32") or a single address. */
export const Cidr = z.string().superRefine((value, ctx) => {
  const result = parseCidr(value)
  if (!result.ok) ctx.addIssue({ code: 'custom', message: result.error })
})
