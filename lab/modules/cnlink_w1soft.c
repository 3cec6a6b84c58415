// SPDX-License-Identifier: GPL-2.0
/*
 * cnlink_w1soft: a software 1-Wire bus master for cnlink's kernel lab. It
 * registers a master with the kernel's w1 core (w1_add_master_device) and
 * emulates devices on it bit by bit: the core drives the bus through
 * touch_bit() and reset_bus() only, so every byte, ROM search triplet and
 * CRC goes through the same slots a real bus has.
 *
 * Devices (by family code):
 *   0x28 DS18B20 thermometer: CONVERT T (44h), READ SCRATCHPAD (BEh, 9 bytes
 *        with CRC8), WRITE SCRATCHPAD (4Eh: TH, TL, config), COPY (48h),
 *        RECALL (B8h), READ POWER SUPPLY (B4h); alarm search answers when the
 *        last conversion is >= TH or <= TL.
 *   0x2D DS2431 1024-bit EEPROM: WRITE SCRATCHPAD (0Fh, inverted CRC16),
 *        READ SCRATCHPAD (AAh), COPY SCRATCHPAD (55h, then AAh bytes),
 *        READ MEMORY (F0h).
 *   0x3A DS2413 dual switch: PIO ACCESS READ (F5h: the status byte with its
 *        complement nibble), PIO ACCESS WRITE (5Ah: byte, inverted byte, then
 *        AAh and the new status).
 *   0x29 DS2408 8-channel switch: READ PIO REGISTERS (F0h: TA1 TA2, the
 *        registers 88h..8Fh, inverted CRC16), CHANNEL ACCESS WRITE (5Ah: byte,
 *        inverted byte, AAh, the new pin state), RESET ACTIVITY LATCHES (C3h,
 *        then AAh), WRITE CONDITIONAL SEARCH REGISTER (CCh: TA1 TA2, bytes up
 *        to 8Dh).
 *   0x26 DS2438 battery monitor: CONVERT T (44h), CONVERT V (B4h: VAD, or VDD
 *        when the status register's AD bit is set), RECALL (B8h page), READ
 *        SCRATCHPAD (BEh page: 8 bytes and CRC8), WRITE SCRATCHPAD (4Eh page,
 *        bytes), COPY SCRATCHPAD (48h page: the writable bytes only); the
 *        current register follows `current` while the status IAD bit is set.
 *   0x1D DS2423 counter: READ MEMORY + COUNTER (A5h: TA1 TA2, then to the end
 *        of each page its data, 32-bit counter, 4 zero bytes and inverted
 *        CRC16; the counters of pages 14 and 15 count the inputs A and B).
 *   0x01 DS2401 serial number (and any other family): ROM functions only.
 * ROM functions: READ ROM 33h, MATCH ROM 55h, SEARCH ROM F0h, ALARM SEARCH
 * ECh, SKIP ROM CCh, RESUME A5h (the device selected last by MATCH ROM or a
 * search).
 *
 * DS18B20 details the library depends on: the power-on scratchpad is +85 C
 * (50h 05h) with byte 6 = 0Ch; a conversion sets byte 6 to 10h minus the low
 * nibble of the temperature register (what the kernel's w1_therm checks to
 * tell a real 85 C from the power-on value); the configuration register keeps
 * only its resolution bits (R1 R0) and reads 1s in bits 0..4, 0 in bit 7;
 * READ POWER SUPPLY answers 0s when the device is parasite-powered. With
 * `timed=1` a conversion takes the datasheet's time for the resolution
 * (93.75, 187.5, 375, 750 ms): until then read slots see 0 and the
 * scratchpad keeps the previous temperature.
 *
 * Control, as root, through /sys/module/cnlink_w1soft/parameters/:
 *   add     "28.0000000001a2" adds a device (family.serial, 12 hex digits);
 *           "28.0000000001a2.ff" gives it that ROM CRC (a bad one on purpose)
 *   remove  "28.0000000001a2"
 *   temp    "28.0000000001a2 -12500": the thermometer's temperature, in
 *           thousandths of a degree C (converted at the next CONVERT T)
 *   fault   "none", "no-presence" (no device answers a reset) or "crc"
 *           (scratchpad CRCs are sent wrong)
 *   set     "26.000000000001 vad 4870": one property of a device: temp
 *           (thousandths of a degree C), vad / vdd (mV, DS2438), current
 *           (the DS2438 current register, raw), input (the external levels
 *           of the PIO pins, a bit mask: 0 = held low), counterN (the DS2423
 *           counter of page N), parasite (DS18B20: 1 = parasite power),
 *           power-on (DS18B20: back to the power-on scratchpad)
 *   timed   1: DS18B20 conversions take their datasheet time (default 0:
 *           done at once)
 *   devices (read) one line per device: id, kind, temperature
 * At load, `initial` lists the devices to start with (comma-separated ids).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/w1.h>

enum kind { K_ROM_ONLY, K_DS18B20, K_DS2431, K_DS2413, K_DS2408, K_DS2438, K_DS2423 };

enum state {
	S_IDLE,		/* not selected: ignores everything until a reset */
	S_ROM_CMD,	/* receiving the ROM function byte */
	S_MATCH,	/* receiving the 64-bit id of MATCH ROM */
	S_SEARCH,	/* SEARCH ROM / ALARM SEARCH, bit by bit */
	S_FUNC_CMD,	/* selected: receiving the device function byte */
	S_RX,		/* receiving the function's arguments */
	S_TX,		/* sending bytes (then ones) */
};

#define DS2431_MEM 0x90
#define DS2423_MEM 512
/* The longest answer: DS2423 memory from address 0, each page with its counter, zeros and CRC. */
#define TX_MAX (DS2423_MEM + 16 * 10)

struct soft_dev {
	struct list_head entry;
	u8 rom[8];
	enum kind kind;
	/* bus protocol */
	enum state state;
	int bits;		/* bits received into `acc`, or search position */
	int step;		/* search: 0 id bit, 1 complement, 2 direction */
	u8 acc;
	u8 cmd;			/* the function command being served */
	u8 rx[16];
	int rx_len;
	int rx_want;
	u8 tx[TX_MAX];
	int tx_len;
	int tx_bit;
	bool tx_alternate;	/* after COPY SCRATCHPAD: AAh forever */
	u8 tx_fill;		/* what read slots see after tx: 1, or 0 */
	bool resume;		/* selected by the last MATCH ROM or search */
	/* DS18B20 */
	int temp_mc;		/* physical temperature, milli-degrees C */
	u8 scratch[9];
	u8 e2[3];		/* TH, TL, config */
	bool alarm;		/* set by a conversion outside [TL, TH] */
	bool parasite;		/* READ POWER SUPPLY answers 0 */
	bool converting;	/* a timed conversion runs until conv_done */
	unsigned long conv_done;
	s16 conv_reg;		/* what the running conversion will give */
	/* DS2413, DS2408: output latch, external pin levels, activity */
	u8 latch, input, activity, last_pins;
	u8 cs_mask, cs_pol, control;
	/* DS2438 */
	u8 pages[8][8];		/* memory: page 0 holds the registers */
	u8 spad[8][8];		/* scratchpad */
	int vad_mv, vdd_mv;
	s16 sense;		/* the current register (voltage across RSENS) */
	/* DS2423 */
	u8 ram[DS2423_MEM];
	u32 counters[16];
	/* DS2431 */
	u8 mem[DS2431_MEM];
	u8 sp[8];
	u8 ta1, ta2, es;
};

static LIST_HEAD(devices_list);
static DEFINE_MUTEX(lock);
static enum { F_NONE, F_NO_PRESENCE, F_CRC } fault;
static bool timed;

/* CRC8 of the 1-Wire ROM and DS18B20 scratchpad: x^8 + x^5 + x^4 + 1, LSB first. */
static u8 crc8(const u8 *data, int len)
{
	u8 crc = 0;
	int i, b;

	for (i = 0; i < len; i++) {
		u8 byte = data[i];

		for (b = 0; b < 8; b++) {
			u8 mix = (crc ^ byte) & 1;

			crc >>= 1;
			if (mix)
				crc ^= 0x8c;
			byte >>= 1;
		}
	}
	return crc;
}

/* CRC16 of the DS2431: x^16 + x^15 + x^2 + 1, LSB first. */
static u16 crc16(u16 crc, const u8 *data, int len)
{
	int i, b;

	for (i = 0; i < len; i++) {
		crc ^= data[i];
		for (b = 0; b < 8; b++)
			crc = (crc & 1) ? (crc >> 1) ^ 0xa001 : crc >> 1;
	}
	return crc;
}

static void send(struct soft_dev *d, const u8 *bytes, int len)
{
	memcpy(d->tx, bytes, len);
	d->tx_len = len;
	d->tx_bit = 0;
	d->tx_alternate = false;
	d->tx_fill = 1;
	d->state = S_TX;
}

/* Nothing more to say: read slots see ones (the bus is released). */
static void send_ones(struct soft_dev *d)
{
	send(d, NULL, 0);
}

static void expect(struct soft_dev *d, int count)
{
	d->rx_len = 0;
	d->rx_want = count;
	d->state = S_RX;
}

/* The 12-bit temperature register for `temp_mc` at the configured resolution. */
static s16 temp_register(struct soft_dev *d)
{
	int resolution = ((d->scratch[4] >> 5) & 3) + 9;
	s32 sixteenths = DIV_ROUND_CLOSEST(d->temp_mc * 16, 1000);

	/* Lower resolutions leave the low bits undefined; they read as 0. */
	sixteenths &= ~((1 << (12 - resolution)) - 1);
	return clamp_t(s32, sixteenths, -55 * 16, 125 * 16);
}

/* The alarm flag after a conversion: the integer degrees at or beyond TH or TL. */
static bool alarm_after_conversion(struct soft_dev *d)
{
	s8 t = (s16)(d->scratch[0] | (d->scratch[1] << 8)) >> 4;

	return t >= (s8)d->scratch[2] || t <= (s8)d->scratch[3];
}

static void scratch_crc(struct soft_dev *d)
{
	d->scratch[8] = crc8(d->scratch, 8) ^ (fault == F_CRC ? 0x5a : 0);
}

/* Conversion time at the configured resolution, microseconds (datasheet tCONV). */
static unsigned int conversion_us(struct soft_dev *d)
{
	return 93750u << ((d->scratch[4] >> 5) & 3);
}

static void conversion_done(struct soft_dev *d, s16 reg)
{
	d->scratch[0] = reg & 0xff;
	d->scratch[1] = (reg >> 8) & 0xff;
	/* Byte 6 is 0Ch at power-on; after a conversion, 10h minus the register's low nibble. */
	d->scratch[6] = 0x10 - (reg & 0x0f);
	d->alarm = alarm_after_conversion(d);
	d->converting = false;
	scratch_crc(d);
}

/* A timed conversion whose time is up lands in the scratchpad. */
static void settle(struct soft_dev *d)
{
	if (d->converting && time_after_eq(jiffies, d->conv_done))
		conversion_done(d, d->conv_reg);
}

static void ds18b20_function(struct soft_dev *d)
{
	settle(d);
	switch (d->cmd) {
	case 0x44: /* CONVERT T: read slots see 0 while converting, then 1 */
		if (timed) {
			d->conv_reg = temp_register(d);
			/* Rounded down to whole jiffies: never longer than the datasheet's time. */
			d->conv_done = jiffies + (unsigned long)conversion_us(d) * HZ / 1000000;
			d->converting = true;
			send_ones(d);
			d->tx_fill = 0;
		} else {
			conversion_done(d, temp_register(d));
			send_ones(d);
		}
		break;
	case 0xbe: /* READ SCRATCHPAD */
		scratch_crc(d);
		send(d, d->scratch, 9);
		break;
	case 0x4e: /* WRITE SCRATCHPAD: TH, TL, config */
		expect(d, 3);
		break;
	case 0x48: /* COPY SCRATCHPAD */
		memcpy(d->e2, d->scratch + 2, 3);
		send_ones(d);
		break;
	case 0xb8: /* RECALL E2 */
		memcpy(d->scratch + 2, d->e2, 3);
		scratch_crc(d);
		send_ones(d);
		break;
	case 0xb4: /* READ POWER SUPPLY: parasite-powered devices pull the read slots low */
		send_ones(d);
		d->tx_fill = d->parasite ? 0 : 1;
		break;
	default:
		send_ones(d);
		break;
	}
}

/* The DS2413 status byte: PIOA pin, PIOA latch, PIOB pin, PIOB latch; the high nibble their complement. */
static u8 ds2413_status(struct soft_dev *d)
{
	u8 pins = d->latch & d->input & 3;
	u8 low = (pins & 1) | ((d->latch & 1) << 1) | ((pins & 2) << 1) | ((d->latch & 2) << 2);

	return low | ((~low & 0x0f) << 4);
}

/* DS2408/DS2413 pins: a latch at 0 pulls its pin low; the others follow the outside. */
static void pins_changed(struct soft_dev *d)
{
	u8 pins = d->latch & d->input;

	d->activity |= pins ^ d->last_pins;
	d->last_pins = pins;
}

static void ds2413_function(struct soft_dev *d)
{
	u8 status[32];

	switch (d->cmd) {
	case 0xf5: /* PIO ACCESS READ: the status byte, again and again */
		memset(status, ds2413_status(d), sizeof(status));
		send(d, status, sizeof(status));
		break;
	case 0x5a: /* PIO ACCESS WRITE: byte, inverted byte */
		expect(d, 2);
		break;
	default:
		send_ones(d);
		break;
	}
}

/* DS2408 register 88h..8Fh. */
static u8 ds2408_register(struct soft_dev *d, int addr)
{
	switch (addr) {
	case 0x88: return d->latch & d->input;
	case 0x89: return d->latch;
	case 0x8a: return d->activity;
	case 0x8b: return d->cs_mask;
	case 0x8c: return d->cs_pol;
	case 0x8d: return d->control;
	default: return 0xff;
	}
}

static void ds2408_function(struct soft_dev *d)
{
	switch (d->cmd) {
	case 0xf0: /* READ PIO REGISTERS: TA1 TA2 */
	case 0x5a: /* CHANNEL ACCESS WRITE: byte, inverted byte */
	case 0xcc: /* WRITE CONDITIONAL SEARCH REGISTER: TA1 TA2, then bytes */
		expect(d, 2);
		break;
	case 0xc3: /* RESET ACTIVITY LATCHES: then AAh forever */
		d->activity = 0;
		send_ones(d);
		d->tx_alternate = true;
		break;
	default:
		send_ones(d);
		break;
	}
}

/* DS2438 page 0 registers from the emulated inputs. */
static void ds2438_temperature(struct soft_dev *d)
{
	/* 13 bits: 1/32 degree in bits 3..15 of the register. */
	s32 reg = DIV_ROUND_CLOSEST(d->temp_mc * 32, 1000) * 8;

	reg = clamp_t(s32, reg, -55 * 256, 125 * 256);
	d->pages[0][1] = reg & 0xff;
	d->pages[0][2] = (reg >> 8) & 0xff;
}

static void ds2438_voltage(struct soft_dev *d)
{
	int mv = (d->pages[0][0] & 0x08) ? d->vdd_mv : d->vad_mv;
	int reg = clamp_t(int, DIV_ROUND_CLOSEST(mv, 10), 0, 1023);

	d->pages[0][3] = reg & 0xff;
	d->pages[0][4] = reg >> 8;
}

static void ds2438_current(struct soft_dev *d)
{
	if (d->pages[0][0] & 0x01) {	/* IAD: the current A/D runs */
		d->pages[0][5] = d->sense & 0xff;
		d->pages[0][6] = (d->sense >> 8) & 0xff;
	}
}

static void ds2438_function(struct soft_dev *d)
{
	switch (d->cmd) {
	case 0x44: /* CONVERT T */
		ds2438_temperature(d);
		send_ones(d);
		break;
	case 0xb4: /* CONVERT V */
		ds2438_voltage(d);
		send_ones(d);
		break;
	case 0xb8: /* RECALL MEMORY page */
	case 0xbe: /* READ SCRATCHPAD page */
	case 0x4e: /* WRITE SCRATCHPAD page, bytes */
	case 0x48: /* COPY SCRATCHPAD page */
		expect(d, 1);
		break;
	default:
		send_ones(d);
		break;
	}
}

/* DS2423 READ MEMORY + COUNTER from `addr`: each page to its end, its counter, 4 zeros, inverted CRC16. */
static void ds2423_read(struct soft_dev *d, int addr)
{
	u8 head[3] = { d->cmd, d->rx[0], d->rx[1] };
	u16 crc = crc16(0, head, 3);
	int n = 0;

	while (addr < DS2423_MEM) {
		int page = addr / 32, end = (page + 1) * 32, start = n, i;
		u32 c = d->counters[page];

		memcpy(d->tx + n, d->ram + addr, end - addr);
		n += end - addr;
		for (i = 0; i < 4; i++)
			d->tx[n++] = (c >> (8 * i)) & 0xff;
		for (i = 0; i < 4; i++)
			d->tx[n++] = 0;
		crc = ~crc16(crc, d->tx + start, n - start);
		if (fault == F_CRC)
			crc ^= 0x1234;
		d->tx[n++] = crc & 0xff;
		d->tx[n++] = crc >> 8;
		crc = 0;	/* the next page's CRC covers only what follows */
		addr = end;
	}
	d->tx_len = n;
	d->tx_bit = 0;
	d->tx_alternate = false;
	d->tx_fill = 1;
	d->state = S_TX;
}

static void ds2431_function(struct soft_dev *d)
{
	switch (d->cmd) {
	case 0x0f: /* WRITE SCRATCHPAD: TA1 TA2, then data to the end of the row */
		expect(d, 2);
		break;
	case 0x55: /* COPY SCRATCHPAD: TA1 TA2 E/S */
		expect(d, 3);
		break;
	case 0xaa: { /* READ SCRATCHPAD: TA1 TA2 E/S, data, inverted CRC16 */
		u8 out[3 + 8 + 2];
		int start = d->ta1 & 7, end = d->es & 7, n = end - start + 1;
		u16 crc;

		out[0] = d->ta1;
		out[1] = d->ta2;
		out[2] = d->es;
		memcpy(out + 3, d->sp + start, n);
		crc = ~crc16(crc16(0, &d->cmd, 1), out, 3 + n);
		if (fault == F_CRC)
			crc ^= 0x1234;
		out[3 + n] = crc & 0xff;
		out[4 + n] = crc >> 8;
		send(d, out, 5 + n);
		break;
	}
	case 0xf0: /* READ MEMORY: TA1 TA2, then bytes to the end of memory */
		expect(d, 2);
		break;
	default:
		send_ones(d);
		break;
	}
}

/* Bytes the DS2438 keeps of a COPY SCRATCHPAD, per page (the others are read-only registers). */
static u8 ds2438_writable(int page, int i)
{
	if (page == 0)
		return i == 0 ? 0x0f : i == 7 ? 0xff : 0;
	if (page == 1)
		return i >= 4 ? 0xff : 0;
	return 0xff;
}

/* DS2438 arguments: the page byte, then (WRITE SCRATCHPAD) data bytes one by one. */
static void ds2438_arguments(struct soft_dev *d)
{
	int page = d->rx[0] & 7, i;
	u8 out[9];

	switch (d->cmd) {
	case 0xb8:
		if (page == 0)
			ds2438_current(d);
		memcpy(d->spad[page], d->pages[page], 8);
		send_ones(d);
		break;
	case 0xbe:
		memcpy(out, d->spad[page], 8);
		out[8] = crc8(out, 8) ^ (fault == F_CRC ? 0x5a : 0);
		send(d, out, 9);
		break;
	case 0x48:
		for (i = 0; i < 8; i++) {
			u8 keep = ds2438_writable(page, i);

			d->pages[page][i] = (d->pages[page][i] & ~keep) | (d->spad[page][i] & keep);
		}
		send_ones(d);
		break;
	case 0x4e:
		if (d->rx_len > 1)
			d->spad[page][d->rx_len - 2] = d->rx[d->rx_len - 1];
		if (d->rx_len < 9)
			d->rx_want = d->rx_len + 1;	/* up to 8 bytes, until the reset */
		else
			send_ones(d);
		break;
	}
}

/* DS2408 arguments: TA1 TA2 (READ PIO REGISTERS, WRITE CONDITIONAL SEARCH REGISTER) or a byte pair. */
static void ds2408_arguments(struct soft_dev *d)
{
	int addr = d->rx[0] | (d->rx[1] << 8), i, n;
	u8 out[8 + 2];
	u16 crc;

	switch (d->cmd) {
	case 0xf0:
		if (addr < 0x88 || addr > 0x8f) {
			send_ones(d);
			break;
		}
		n = 0x90 - addr;
		for (i = 0; i < n; i++)
			out[i] = ds2408_register(d, addr + i);
		crc = ~crc16(crc16(crc16(0, &d->cmd, 1), d->rx, 2), out, n);
		if (fault == F_CRC)
			crc ^= 0x1234;
		out[n] = crc & 0xff;
		out[n + 1] = crc >> 8;
		send(d, out, n + 2);
		break;
	case 0x5a:
		if (d->rx[1] != (u8)~d->rx[0]) {
			send_ones(d);
			break;
		}
		d->latch = d->rx[0];
		pins_changed(d);
		out[0] = 0xaa;
		out[1] = d->latch & d->input;
		send(d, out, 2);
		break;
	case 0xcc:
		if (d->rx_len == 2) {
			d->rx_want = 3;
			break;
		}
		addr += d->rx_len - 3;
		if (addr == 0x8b)
			d->cs_mask = d->rx[d->rx_len - 1];
		else if (addr == 0x8c)
			d->cs_pol = d->rx[d->rx_len - 1];
		else if (addr == 0x8d)	/* PLS CT ROS writable, PORL cleared by a 0 */
			d->control = (d->control & 0xf0) | (d->rx[d->rx_len - 1] & 0x07) |
				     (d->control & d->rx[d->rx_len - 1] & 0x08);
		if (addr < 0x8d && d->rx_len < sizeof(d->rx))
			d->rx_want = d->rx_len + 1;
		else
			send_ones(d);
		break;
	}
}

/* A function's argument bytes are in: act on them. */
static void arguments_in(struct soft_dev *d)
{
	if (d->kind == K_DS18B20 && d->cmd == 0x4e) {
		d->scratch[2] = d->rx[0];
		d->scratch[3] = d->rx[1];
		/* The configuration register keeps R1 R0; bits 0..4 read 1, bit 7 reads 0. */
		d->scratch[4] = (d->rx[2] & 0x60) | 0x1f;
		scratch_crc(d);
		send_ones(d);
		return;
	}
	if (d->kind == K_DS2413 && d->cmd == 0x5a) {
		u8 out[2];

		if (d->rx[1] != (u8)~d->rx[0]) {
			send_ones(d);
			return;
		}
		d->latch = d->rx[0] | 0xfc;
		pins_changed(d);
		out[0] = 0xaa;
		out[1] = ds2413_status(d);
		send(d, out, 2);
		return;
	}
	if (d->kind == K_DS2408) {
		ds2408_arguments(d);
		return;
	}
	if (d->kind == K_DS2438) {
		ds2438_arguments(d);
		return;
	}
	if (d->kind == K_DS2423 && d->cmd == 0xa5) {
		int addr = d->rx[0] | (d->rx[1] << 8);

		if (addr >= DS2423_MEM)
			send_ones(d);
		else
			ds2423_read(d, addr);
		return;
	}
	if (d->kind != K_DS2431) {
		send_ones(d);
		return;
	}
	if (d->cmd == 0xf0) {
		int addr = d->rx[0] | (d->rx[1] << 8);

		if (addr >= DS2431_MEM)
			send_ones(d);
		else
			send(d, d->mem + addr, DS2431_MEM - addr);
	} else if (d->cmd == 0x0f && d->rx_len == 2) {
		/* Target address in: now the data, up to the end of its 8-byte row. */
		d->ta1 = d->rx[0];
		d->ta2 = d->rx[1];
		d->rx_want = 2 + 8 - (d->ta1 & 7);
	} else if (d->cmd == 0x0f) {
		int start = d->ta1 & 7, n = d->rx_len - 2;
		u8 out[2];
		u16 crc;

		memcpy(d->sp + start, d->rx + 2, n);
		d->es = (start + n - 1) & 7;	/* no partial flag: the row was written to its end */
		crc = ~crc16(crc16(0, &d->cmd, 1), d->rx, d->rx_len);
		if (fault == F_CRC)
			crc ^= 0x1234;
		out[0] = crc & 0xff;
		out[1] = crc >> 8;
		send(d, out, 2);
	} else if (d->cmd == 0x55) {
		int addr = d->ta1 | (d->ta2 << 8);

		/* The authorization must repeat TA1, TA2 and E/S; a whole row must be written. */
		if (d->rx[0] == d->ta1 && d->rx[1] == d->ta2 && d->rx[2] == d->es &&
		    (d->ta1 & 7) == 0 && (d->es & 7) == 7 && addr + 8 <= 0x80) {
			memcpy(d->mem + addr, d->sp, 8);
			d->es |= 0x80;		/* AA: copy done */
			send_ones(d);
			d->tx_alternate = true;
		} else {
			send_ones(d);
		}
	}
}

static void receive_bit(struct soft_dev *d, u8 level)
{
	d->acc |= level << d->bits;
	if (++d->bits < 8)
		return;
	d->bits = 0;
	switch (d->state) {
	case S_ROM_CMD:
		switch (d->acc) {
		case 0x33:	/* READ ROM */
			send(d, d->rom, 8);
			d->state = S_TX;
			d->cmd = 0;	/* after the ROM, the function command */
			break;
		case 0x55:	/* MATCH ROM */
			d->state = S_MATCH;
			d->rx_len = 0;
			break;
		case 0xa5:	/* RESUME: the device selected last */
			d->state = d->resume ? S_FUNC_CMD : S_IDLE;
			break;
		case 0xf0:	/* SEARCH ROM */
		case 0xec:	/* ALARM SEARCH */
			if (d->acc == 0xec && !(d->kind == K_DS18B20 && d->alarm)) {
				d->state = S_IDLE;
				break;
			}
			d->state = S_SEARCH;
			d->bits = 0;
			d->step = 0;
			break;
		case 0xcc:	/* SKIP ROM */
			d->state = S_FUNC_CMD;
			break;
		default:
			d->state = S_IDLE;
		}
		if (d->acc != 0xa5 && d->acc != 0x55)
			d->resume = d->acc == 0xf0 || d->acc == 0xec;
		break;
	case S_MATCH:
		d->rx[d->rx_len++] = d->acc;
		if (d->rx_len == 8) {
			d->resume = !memcmp(d->rx, d->rom, 8);
			d->state = d->resume ? S_FUNC_CMD : S_IDLE;
		}
		break;
	case S_FUNC_CMD:
		d->cmd = d->acc;
		if (d->kind == K_DS18B20)
			ds18b20_function(d);
		else if (d->kind == K_DS2431)
			ds2431_function(d);
		else if (d->kind == K_DS2413)
			ds2413_function(d);
		else if (d->kind == K_DS2408)
			ds2408_function(d);
		else if (d->kind == K_DS2438)
			ds2438_function(d);
		else if (d->kind == K_DS2423 && d->cmd == 0xa5)
			expect(d, 2);	/* READ MEMORY + COUNTER: TA1 TA2 */
		else
			send_ones(d);
		break;
	case S_RX:
		d->rx[d->rx_len++] = d->acc;
		if (d->rx_len == d->rx_want)
			arguments_in(d);
		break;
	default:
		break;
	}
	d->acc = 0;
}

/* Whether the device drives this slot, and with which level. */
static bool transmitting(struct soft_dev *d, u8 *bit)
{
	if (d->state == S_SEARCH && d->step < 2) {
		u8 id = (d->rom[d->bits / 8] >> (d->bits % 8)) & 1;

		*bit = d->step == 0 ? id : !id;
		return true;
	}
	if (d->state == S_TX) {
		if (d->kind == K_DS18B20 && d->cmd == 0x44 && d->converting) {
			settle(d);
			if (!d->converting)
				d->tx_fill = 1;	/* conversion done: read slots see 1 */
		}
		if (d->tx_bit < d->tx_len * 8)
			*bit = (d->tx[d->tx_bit / 8] >> (d->tx_bit % 8)) & 1;
		else if (d->tx_alternate)
			*bit = d->tx_bit & 1;	/* AAh = 10101010 LSB first: 0,1,0,1,... */
		else
			*bit = d->tx_fill;
		return true;
	}
	return false;
}

static void after_slot(struct soft_dev *d, bool sent, u8 level)
{
	if (d->state == S_SEARCH) {
		if (d->step < 2) {
			d->step++;
			return;
		}
		/* The master's direction: devices whose bit differs drop out. */
		if (level != ((d->rom[d->bits / 8] >> (d->bits % 8)) & 1)) {
			d->state = S_IDLE;
			return;
		}
		d->step = 0;
		if (++d->bits == 64) {
			d->bits = 0;
			d->acc = 0;
			d->state = S_FUNC_CMD;
			d->resume = true;
		}
		return;
	}
	if (sent) {
		d->tx_bit++;
		/* READ ROM: once the id is out, the function command follows. */
		if (d->cmd == 0 && d->tx_bit == 64 && d->tx_len == 8 && !memcmp(d->tx, d->rom, 8)) {
			d->state = S_FUNC_CMD;
			d->bits = 0;
			d->acc = 0;
		}
		return;
	}
	if (d->state != S_IDLE)
		receive_bit(d, level);
}

static u8 soft_touch_bit(void *data, u8 bit)
{
	struct soft_dev *d;
	u8 level = bit, out;

	mutex_lock(&lock);
	/* Wired AND: any device driving a 0 pulls the line low. */
	list_for_each_entry(d, &devices_list, entry)
		if (transmitting(d, &out))
			level &= out;
	list_for_each_entry(d, &devices_list, entry) {
		bool sent = transmitting(d, &out);

		after_slot(d, sent, level);
	}
	mutex_unlock(&lock);
	return level;
}

/* Returns 0 when a device answered with a presence pulse, 1 when none did. */
static u8 soft_reset_bus(void *data)
{
	struct soft_dev *d;
	bool present = false;

	mutex_lock(&lock);
	list_for_each_entry(d, &devices_list, entry) {
		settle(d);
		d->state = S_ROM_CMD;
		d->bits = 0;
		d->acc = 0;
		d->cmd = 0;
		d->tx_len = 0;
		d->tx_alternate = false;
		present = true;
	}
	if (fault == F_NO_PRESENCE) {
		list_for_each_entry(d, &devices_list, entry)
			d->state = S_IDLE;
		present = false;
	}
	mutex_unlock(&lock);
	return present ? 0 : 1;
}

static struct w1_bus_master master = {
	.touch_bit = soft_touch_bit,
	.reset_bus = soft_reset_bus,
};

static int hex_byte(const char *text, u8 *out)
{
	char two[3] = { text[0], text[0] ? text[1] : 0, 0 };

	return strlen(two) == 2 ? kstrtou8(two, 16, out) : -EINVAL;
}

/* Parses "ff.0123456789ab" or "ff.0123456789ab.cc" into a ROM (serial least significant byte first). */
static int parse_id(const char *text, u8 rom[8], bool *explicit_crc)
{
	int i, len = strlen(text);

	if ((len != 15 && len != 18) || text[2] != '.' || (len == 18 && text[15] != '.'))
		return -EINVAL;
	if (hex_byte(text, &rom[0]))
		return -EINVAL;
	for (i = 0; i < 6; i++)
		if (hex_byte(text + 3 + 2 * (5 - i), &rom[1 + i]))
			return -EINVAL;
	*explicit_crc = len == 18;
	if (*explicit_crc)
		return hex_byte(text + 16, &rom[7]);
	rom[7] = crc8(rom, 7);
	return 0;
}

static struct soft_dev *find(const u8 rom[8])
{
	struct soft_dev *d;

	list_for_each_entry(d, &devices_list, entry)
		if (!memcmp(d->rom, rom, 7))
			return d;
	return NULL;
}

/* The power-on state of a device's registers. */
static void power_on(struct soft_dev *d)
{
	/* DS18B20: +85 C in the register, byte 6 = 0Ch; TH, TL and config from its EEPROM. */
	d->scratch[0] = 0x50;
	d->scratch[1] = 0x05;
	memcpy(d->scratch + 2, d->e2, 3);
	d->scratch[5] = 0xff;
	d->scratch[6] = 0x0c;
	d->scratch[7] = 0x10;
	d->converting = false;
	d->alarm = false;
	scratch_crc(d);
	/* DS2413, DS2408: outputs off, pins high; DS2408 control: power-on reset latch, VCC powered. */
	d->latch = 0xff;
	d->input = 0xff;
	d->last_pins = 0xff;
	d->activity = 0;
	d->cs_mask = 0;
	d->cs_pol = 0;
	d->control = 0x88;
	/* DS2438: IAD, CA, EE, AD set; 5 V on VDD. */
	memset(d->pages, 0, sizeof(d->pages));
	d->pages[0][0] = 0x0f;
	d->vdd_mv = 5000;
}

static int add_device(const char *text)
{
	struct soft_dev *d;
	bool explicit_crc;
	u8 rom[8];
	int err = parse_id(text, rom, &explicit_crc);

	if (err)
		return err;
	d = kzalloc(sizeof(*d), GFP_KERNEL);
	if (!d)
		return -ENOMEM;
	memcpy(d->rom, rom, 8);
	switch (rom[0]) {
	case 0x28: d->kind = K_DS18B20; break;
	case 0x2d: d->kind = K_DS2431; break;
	case 0x3a: d->kind = K_DS2413; break;
	case 0x29: d->kind = K_DS2408; break;
	case 0x26: d->kind = K_DS2438; break;
	case 0x1d: d->kind = K_DS2423; break;
	default: d->kind = K_ROM_ONLY;
	}
	d->state = S_IDLE;
	d->temp_mc = 20000;
	d->e2[0] = 75;		/* DS18B20 EEPROM from the factory: TH 75, TL 70, 12 bits */
	d->e2[1] = 70;
	d->e2[2] = 0x7f;
	power_on(d);
	memset(d->mem, 0xff, sizeof(d->mem));
	mutex_lock(&lock);
	if (find(rom)) {
		mutex_unlock(&lock);
		kfree(d);
		return -EEXIST;
	}
	list_add_tail(&d->entry, &devices_list);
	mutex_unlock(&lock);
	return 0;
}

static int set_add(const char *value, const struct kernel_param *kp)
{
	return add_device(strim((char *)value));
}

static int set_remove(const char *value, const struct kernel_param *kp)
{
	struct soft_dev *d;
	bool explicit_crc;
	u8 rom[8];
	int err = parse_id(strim((char *)value), rom, &explicit_crc);

	if (err)
		return err;
	mutex_lock(&lock);
	d = find(rom);
	if (d)
		list_del(&d->entry);
	mutex_unlock(&lock);
	kfree(d);
	return d ? 0 : -ENOENT;
}

static int set_temp(const char *value, const struct kernel_param *kp)
{
	char id[20];
	int mc;
	bool explicit_crc;
	u8 rom[8];
	struct soft_dev *d;

	if (sscanf(value, "%19s %d", id, &mc) != 2 || parse_id(id, rom, &explicit_crc))
		return -EINVAL;
	mutex_lock(&lock);
	d = find(rom);
	if (d)
		d->temp_mc = mc;
	mutex_unlock(&lock);
	return d ? 0 : -ENOENT;
}

static int set_property(const char *value, const struct kernel_param *kp)
{
	char id[20], key[16];
	int v, page, err = 0;
	bool explicit_crc;
	u8 rom[8];
	struct soft_dev *d;

	if (sscanf(value, "%19s %15s %i", id, key, &v) != 3 || parse_id(id, rom, &explicit_crc))
		return -EINVAL;
	mutex_lock(&lock);
	d = find(rom);
	if (!d)
		err = -ENOENT;
	else if (!strcmp(key, "temp"))
		d->temp_mc = v;
	else if (!strcmp(key, "vad"))
		d->vad_mv = v;
	else if (!strcmp(key, "vdd"))
		d->vdd_mv = v;
	else if (!strcmp(key, "current"))
		d->sense = v;
	else if (!strcmp(key, "input")) {
		d->input = v;
		pins_changed(d);
	} else if (!strcmp(key, "parasite"))
		d->parasite = v;
	else if (!strcmp(key, "power-on"))
		power_on(d);
	else if (sscanf(key, "counter%d", &page) == 1 && page >= 0 && page < 16)
		d->counters[page] = v;
	else
		err = -EINVAL;
	mutex_unlock(&lock);
	return err;
}

static int set_fault(const char *value, const struct kernel_param *kp)
{
	if (sysfs_streq(value, "none"))
		fault = F_NONE;
	else if (sysfs_streq(value, "no-presence"))
		fault = F_NO_PRESENCE;
	else if (sysfs_streq(value, "crc"))
		fault = F_CRC;
	else
		return -EINVAL;
	return 0;
}

static int get_fault(char *buffer, const struct kernel_param *kp)
{
	static const char *const names[] = { "none", "no-presence", "crc" };

	return sysfs_emit(buffer, "%s\n", names[fault]);
}

static int get_devices(char *buffer, const struct kernel_param *kp)
{
	static const char *const kinds[] = { "rom-only", "ds18b20", "ds2431", "ds2413", "ds2408", "ds2438",
					     "ds2423" };
	struct soft_dev *d;
	int n = 0;

	mutex_lock(&lock);
	list_for_each_entry(d, &devices_list, entry) {
		u64 serial = 0;
		int i;

		for (i = 6; i >= 1; i--)
			serial = (serial << 8) | d->rom[i];
		n += scnprintf(buffer + n, PAGE_SIZE - n, "%02x.%012llx.%02x %s %d\n", d->rom[0], serial,
			       d->rom[7], kinds[d->kind], d->temp_mc);
	}
	mutex_unlock(&lock);
	return n;
}

static const struct kernel_param_ops add_ops = { .set = set_add };
static const struct kernel_param_ops remove_ops = { .set = set_remove };
static const struct kernel_param_ops temp_ops = { .set = set_temp };
static const struct kernel_param_ops set_ops = { .set = set_property };
static const struct kernel_param_ops fault_ops = { .set = set_fault, .get = get_fault };
static const struct kernel_param_ops devices_ops = { .get = get_devices };
module_param_cb(add, &add_ops, NULL, 0200);
MODULE_PARM_DESC(add, "add a device: family.serial (12 hex digits)[.crc]");
module_param_cb(remove, &remove_ops, NULL, 0200);
MODULE_PARM_DESC(remove, "remove a device: family.serial");
module_param_cb(temp, &temp_ops, NULL, 0200);
MODULE_PARM_DESC(temp, "set a thermometer's temperature: \"family.serial millidegrees\"");
module_param_cb(set, &set_ops, NULL, 0200);
MODULE_PARM_DESC(set, "set a device property: \"family.serial key value\" (temp, vad, vdd, current, input, counterN, parasite, power-on)");
module_param(timed, bool, 0644);
MODULE_PARM_DESC(timed, "DS18B20 conversions take their datasheet time");
module_param_cb(fault, &fault_ops, NULL, 0644);
MODULE_PARM_DESC(fault, "none, no-presence or crc");
module_param_cb(devices, &devices_ops, NULL, 0444);
MODULE_PARM_DESC(devices, "the devices on the bus");

static char *initial = "";
module_param(initial, charp, 0444);
MODULE_PARM_DESC(initial, "comma-separated devices to start with");

static int __init cnlink_w1soft_init(void)
{
	char *list, *cursor, *id;
	int err = 0;

	list = kstrdup(initial, GFP_KERNEL);
	if (!list)
		return -ENOMEM;
	cursor = list;
	while (!err && (id = strsep(&cursor, ",")) != NULL)
		if (*id)
			err = add_device(id);
	kfree(list);
	if (!err)
		err = w1_add_master_device(&master);
	if (err) {
		struct soft_dev *d, *next;

		list_for_each_entry_safe(d, next, &devices_list, entry)
			kfree(d);
		return err;
	}
	pr_info("software bus master registered\n");
	return 0;
}

static void __exit cnlink_w1soft_exit(void)
{
	struct soft_dev *d, *next;

	w1_remove_master_device(&master);
	list_for_each_entry_safe(d, next, &devices_list, entry)
		kfree(d);
}

module_init(cnlink_w1soft_init);
module_exit(cnlink_w1soft_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("cnlink kernel lab: a software 1-Wire bus master with emulated devices");
