"""The demo's plan: the city's talent programme 2019-2023, as its published figures tell it.

It reproduces the programme's published results for fund years 2019 to 2023:
364 talents introduced (95 masters, 117 graduates of "double first-class"
universities), ¥3,030,000.00 of settling-in allowances and rent subsidies paid
(net of bank returns), free rent in 2 talent apartment buildings, and 44 talent
projects funded. People, employers and document numbers are invented.

The data is planned first, as a list of commands (here), and then recorded through
the ledger's use cases (`ledger.demo.load_demo`), exactly as API clients would
record it: so the demo also exercises every rule (maker-checker, budgets,
departures, clawback limits).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from typing import Final

from ledger.domain.budget import LineKind
from ledger.domain.money import FEN, ZERO
from ledger.domain.vocabulary import code_label
from ledger.usecases.clawbacks import AssessClawback, RecordRecovery
from ledger.usecases.fund_years import Appropriate, CloseFundYear, OpenFundYear
from ledger.usecases.grants import ApproveGrant, ProposeGrant, RejectGrant, RevokeGrant
from ledger.usecases.payments import RecordPayment, ReturnPayment
from ledger.usecases.talents import DepartTalent, RegisterTalent
from ledger.usecases.waivers import EndWaiver, GrantWaiver

SEED = 20_240_315
YEARS = range(2019, 2024)
CLOSED_YEARS = range(2019, 2023)
CURRENCY: Final = "CNY"
#: the published total of settling-in allowances and rent subsidies paid
PUBLISHED_CASH_PAID = Decimal("3030000.00")
CASH_PROGRAMMES = ("settling_in", "rent_subsidy")
#: programme lines of every fund year: kind, and the step its budget is rounded up to
LINES = {
    "settling_in": (LineKind.CASH, 50_000),
    "rent_subsidy": (LineKind.CASH, 50_000),
    "housing": (LineKind.IN_KIND, 50_000),
    "project_support": (LineKind.CASH, 500_000),
}

ADMIN = "demo-admin"
CLERK = "demo-clerk"
APPROVER = "demo-approver"
TREASURY = "demo-treasury"

ARRIVALS = {2019: 52, 2020: 63, 2021: 74, 2022: 83, 2023: 92}
CATEGORIES = {
    "master": 95,
    "double_first_class": 117,
    "bachelor": 58,
    "doctorate": 46,
    "urgently_needed": 36,
    "leading_talent": 12,
}
SERVICE_YEARS = {"leading_talent": 5, "doctorate": 5}  # others commit to 3 years
SETTLING_IN = {
    "leading_talent": Decimal("30000.00"),
    "doctorate": Decimal("15000.00"),
    "master": Decimal("4000.00"),
    "double_first_class": Decimal("2000.00"),
}
RENT_PER_MONTH = {
    "bachelor": Decimal("300.00"),
    "double_first_class": Decimal("400.00"),
    "urgently_needed": Decimal("500.00"),
    "master": Decimal("500.00"),
    "doctorate": Decimal("800.00"),
}
RENT_SUBSIDY_MONTHS = 12
#: who lives rent-free in a talent apartment instead of drawing a rent subsidy
HOUSED_SHARE = {"leading_talent": 1.0, "doctorate": 0.7, "master": 0.1}
BUILDINGS = {"人才公寓A栋": Decimal("2200.00"), "人才公寓B栋": Decimal("1500.00")}
WAIVER_YEARS = 3
PROJECTS = {2019: 6, 2020: 8, 2021: 9, 2022: 10, 2023: 11}
PROJECT_AMOUNTS = {
    "leading_talent": (Decimal("500000.00"), Decimal("1000000.00")),
    "doctorate": (Decimal("200000.00"), Decimal("300000.00")),
    "master": (Decimal("100000.00"), Decimal("150000.00")),
    "urgently_needed": (Decimal("100000.00"), Decimal("150000.00")),
}
DEPARTURES = {2020: 5, 2021: 6, 2022: 6, 2023: 7}

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦傅方邹熊白孟秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵"
)
GIVEN_NAME_CHARACTERS = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红鹏辉玲丹宇浩凯健俊帆帅旭宁欣悦"
    "晨思雨婷佳怡梓涵子轩嘉琪雪梅晓东文博一鸣志远海燕春阳天翼若曦可馨铭泽诗语慧心立新建国"
)
EMPLOYERS = {
    "research": ("长三角先进材料研究院", "禾城智能装备创新研究院", "浙北生物医药创新中心"),
    "health": ("市第一人民医院", "市中医医院", "市妇幼保健院"),
    "education": ("市第一高级中学", "市实验学校", "禾城职业技术学院"),
    "industry": (
        "嘉润光电科技有限公司",
        "恒钧精密机械有限公司",
        "远嘉新材料股份有限公司",
        "禾信半导体有限公司",
        "华睿智能制造有限公司",
        "沐禾生物科技有限公司",
        "嘉宸供应链管理有限公司",
    ),
    "public": ("经济技术开发区管委会", "市大数据发展中心", "市规划设计研究院"),
}
SENIOR_SECTORS = ("research", "health", "industry")
PROJECT_TITLES = (
    "高性能碳纤维复合材料中试",
    "新能源汽车电驱控制系统研发",
    "工业视觉缺陷检测平台",
    "光伏组件智能运维系统",
    "植物源农药绿色制备工艺",
    "慢病管理数字化平台",
    "高端轴承精密加工工艺",
    "氢燃料电池膜电极研发",
    "智慧水务漏损监测系统",
    "功率半导体封装测试",
    "细胞培养基国产化",
    "柔性显示光学膜产业化",
    "县域医共体远程诊疗平台",
    "跨境电商供应链数字化",
)

Step = tuple[str, object]


def plan_demo() -> list[Step]:
    """The demo as (actor, command) steps in recording order; the same on every call."""
    return _Planner().plan()


@dataclass
class _Talent:
    talent_id: str
    category: str
    arrived_on: date
    service_commitment_until: date
    apartment: str | None
    housed: bool
    owns_home: bool = False
    departed_on: date | None = None
    settling_in: _Grant | None = None
    projects: list[_Grant] = field(default_factory=list)


@dataclass
class _Grant:
    grant_id: str
    talent: _Talent
    programme: str
    amount: Decimal
    net_paid: Decimal = ZERO


@dataclass
class _Payment:
    payment_id: str
    grant: _Grant
    amount: Decimal
    value_date: date


@dataclass
class _Year:
    """What one fund year's plan needs to know to size its budget afterwards."""

    year: int
    committed: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(LINES, ZERO))
    payments: list[_Payment] = field(default_factory=list)
    waivers: dict[str, tuple[str, date]] = field(default_factory=dict)  # talent -> waiver


class _Planner:
    """Plans the whole history with one seeded generator, so every load is identical."""

    def __init__(self) -> None:
        self.rng = random.Random(SEED)  # noqa: S311 - reproducible fake data, not secrets
        self.steps: list[Step] = []
        self.talents: list[_Talent] = []
        self.cash_paid = ZERO
        self.serial: Counter[str] = Counter()
        self.names: set[str] = set()
        self.apartments: set[str] = set()
        categories = [name for name, count in CATEGORIES.items() for _ in range(count)]
        self.rng.shuffle(categories)
        self.categories = categories

    def plan(self) -> list[Step]:
        for year in YEARS:
            self._plan_year(_Year(year))
        for year in CLOSED_YEARS:
            reason = f"{year}年度人才发展专项资金决算完成，年度关闭"
            self.steps.append((ADMIN, CloseFundYear(year, reason)))
        return self.steps

    def _next(self, kind: str, width: int) -> str:
        self.serial[kind] += 1
        return f"{kind}-{self.serial[kind]:0{width}d}"

    def _between(self, first: date, last: date) -> date:
        return date.fromordinal(self.rng.randint(first.toordinal(), last.toordinal()))

    def _plan_year(self, fy: _Year) -> None:
        start = len(self.steps)
        leaving = self._choose_leavers(fy.year)
        self._register(fy)
        self._waivers(fy)
        self._settling_in(fy)
        self._projects(fy, leaving)
        self._returns(fy)
        self._departures(fy, leaving)
        supplement_at = len(self.steps)
        self._rent_subsidies(fy)
        self._clawbacks(fy, leaving)
        self._budget(fy, start, supplement_at)

    # --- people -------------------------------------------------------------

    def _name(self) -> str:
        while True:
            length = 1 if self.rng.random() < 0.35 else 2
            given = "".join(self.rng.choice(GIVEN_NAME_CHARACTERS) for _ in range(length))
            name = self.rng.choice(SURNAMES) + given
            if name not in self.names:
                self.names.add(name)
                return name

    def _apartment(self, category: str) -> str | None:
        if self.rng.random() >= HOUSED_SHARE.get(category, 0.0):
            return None
        building = "人才公寓A栋" if category != "master" else "人才公寓B栋"
        if category == "doctorate" and self.rng.random() < 0.4:
            building = "人才公寓B栋"
        while True:
            unit = f"{building} {self.rng.randint(2, 18)}{self.rng.randint(1, 6):02d}"
            if unit not in self.apartments:
                self.apartments.add(unit)
                return unit

    def _register(self, fy: _Year) -> None:
        year = fy.year
        arrivals = sorted(
            self._between(date(year, 1, 3), date(year, 11, 30)) for _ in range(ARRIVALS[year])
        )
        for number, arrived_on in enumerate(arrivals, start=1):
            category = self.categories.pop()
            sectors = SENIOR_SECTORS if category in SERVICE_YEARS else tuple(EMPLOYERS)
            employer = self.rng.choice(EMPLOYERS[self.rng.choice(sectors)])
            years = SERVICE_YEARS.get(category, 3)
            until = _years_after(arrived_on, years)
            apartment = self._apartment(category)
            talent = _Talent(
                f"T-{year}-{number:03d}",
                category,
                arrived_on,
                until - timedelta(days=1),
                apartment,
                housed=apartment is not None,
            )
            self.talents.append(talent)
            self.steps.append(
                (
                    CLERK,
                    RegisterTalent(
                        talent.talent_id,
                        self._name(),
                        category,
                        employer,
                        arrived_on,
                        talent.service_commitment_until,
                    ),
                )
            )

    def _active(self, year: int) -> list[_Talent]:
        return [t for t in self.talents if t.departed_on is None and t.arrived_on.year <= year]

    def _choose_leavers(self, year: int) -> dict[str, date]:
        """Who leaves before their service commitment ends, and when (decided up front,
        so that no project or rent subsidy is planned for them that year)."""
        candidates = [t for t in self._active(year - 1) if t.service_commitment_until.year > year]
        chosen = self.rng.sample(candidates, DEPARTURES.get(year, 0))
        return {t.talent_id: self._between(date(year, 2, 1), date(year, 11, 30)) for t in chosen}

    # --- grants and payments --------------------------------------------------

    def _grant_id(self, year: int) -> str:
        return self._next(f"G-{year}", 4)

    def _propose(
        self, fy: _Year, talent: _Talent, programme: str, amount: Decimal, policy: str, reason: str
    ) -> _Grant:
        grant = _Grant(self._grant_id(fy.year), talent, programme, amount)
        fy.committed[programme] += amount
        command = ProposeGrant(
            grant.grant_id, talent.talent_id, fy.year, programme, amount, policy, reason
        )
        self.steps.append((CLERK, command))
        return grant

    def _approve(self, grant: _Grant, note: str | None = None) -> None:
        self.steps.append((APPROVER, ApproveGrant(grant.grant_id, note)))

    def _reject(self, grant: _Grant, reason: str) -> None:
        self.steps.append((APPROVER, RejectGrant(grant.grant_id, reason)))

    def _revoke(self, grant: _Grant, reason: str) -> None:
        self.steps.append((APPROVER, RevokeGrant(grant.grant_id, reason)))

    def _bank_reference(self, value_date: date) -> str:
        self.serial["BR"] += 1
        return f"BR{value_date:%Y%m%d}{self.serial['BR']:06d}"

    def _pay(self, fy: _Year, grant: _Grant, amount: Decimal, value_date: date) -> _Payment:
        assert value_date.year == fy.year and amount <= grant.amount - grant.net_paid
        payment = _Payment(self._next(f"P-{fy.year}", 5), grant, amount, value_date)
        grant.net_paid += amount
        if grant.programme in CASH_PROGRAMMES:
            self.cash_paid += amount
        fy.payments.append(payment)
        command = RecordPayment(
            payment.payment_id, grant.grant_id, amount, value_date, self._bank_reference(value_date)
        )
        self.steps.append((TREASURY, command))
        return payment

    def _return(self, payment: _Payment, returned_on: date, reason: str) -> None:
        payment.grant.net_paid -= payment.amount
        if payment.grant.programme in CASH_PROGRAMMES:
            self.cash_paid -= payment.amount
        self.steps.append((TREASURY, ReturnPayment(payment.payment_id, returned_on, reason)))

    def _policy(self, year: int, article: str) -> str:
        document = "嘉人才〔2018〕6号" if year < 2021 else "嘉人才〔2021〕2号"
        return f"{document} {article}"

    def _settling_in(self, fy: _Year) -> None:
        """Allowances for the year's arrivals, paid once soon after arrival."""
        rejections = (
            "社保缴纳记录不满6个月，暂不符合申领条件",
            "此前已在本市享受同类安家补贴，不得重复申领",
            "超过到岗后一年的申报期限",
        )
        for talent in [t for t in self.talents if t.arrived_on.year == fy.year]:
            amount = SETTLING_IN.get(talent.category)
            if amount is None:
                continue
            label = code_label("category", talent.category, "zh")
            reason = f"{label}安家补贴（{talent.arrived_on:%Y年%m月}到岗）"
            policy = self._policy(fy.year, "第五条")
            grant = self._propose(fy, talent, "settling_in", amount, policy, reason)
            if self.rng.random() < 0.06:
                self._reject(grant, self.rng.choice(rejections))
                continue
            self._approve(grant, "材料齐全，符合政策" if self.rng.random() < 0.3 else None)
            paid_on = min(
                talent.arrived_on + timedelta(days=self.rng.randint(20, 60)), date(fy.year, 12, 15)
            )
            self._pay(fy, grant, amount, paid_on)
            talent.settling_in = grant

    def _projects(self, fy: _Year, leaving: dict[str, date]) -> None:
        """Project funding: half on approval, half after a mid-term review."""
        year = fy.year
        eligible = [
            t
            for t in self._active(year)
            if t.category in PROJECT_AMOUNTS
            and t.talent_id not in leaving
            and (t.arrived_on.year < year or t.arrived_on <= date(year, 4, 30))
        ]
        weights = [4 if t.category in SERVICE_YEARS else 1 for t in eligible]
        if len(eligible) < PROJECTS[year]:
            raise RuntimeError(f"too few talents for {PROJECTS[year]} projects in {year}")
        chosen: list[_Talent] = []
        while len(chosen) < PROJECTS[year]:
            pick = self.rng.choices(eligible, weights)[0]
            if pick not in chosen:
                chosen.append(pick)
        for talent in chosen:
            amount = self.rng.choice(PROJECT_AMOUNTS[talent.category])
            title = self.rng.choice(PROJECT_TITLES)
            policy = "嘉科〔2019〕15号" if year < 2021 else "嘉科〔2021〕8号"
            grant = self._propose(
                fy, talent, "project_support", amount, policy, f"人才项目扶持：{title}"
            )
            draw = self.rng.random()
            if draw < 0.1:
                self._reject(grant, "专家评审未通过（综合得分低于立项线）")
                continue
            self._approve(grant, f"{year}年度第{self.rng.randint(1, 3)}批人才项目立项")
            first = (amount / 2).quantize(FEN)
            first_on = max(talent.arrived_on, date(year, 3, 1)) + timedelta(
                days=self.rng.randint(20, 75)
            )
            self._pay(fy, grant, first, first_on)
            if draw < 0.16:
                self._revoke(grant, "中期评估不合格，项目终止，剩余资金不再拨付")
                continue
            talent.projects.append(grant)
            if draw < 0.7:
                second_on = self._between(date(year, 10, 8), date(year, 12, 18))
                self._pay(fy, grant, amount - first, second_on)

    def _returns(self, fy: _Year) -> None:
        """Bounced payments: most are paid again to a corrected account, some revoked."""
        returnable = [
            p
            for p in fy.payments
            if p.grant.programme == "settling_in" and p.value_date <= date(fy.year, 12, 1)
        ]
        reasons = ("收款账户已销户", "户名与账号不符", "收款账户状态异常（冻结）")
        for payment in self.rng.sample(returnable, min(3, len(returnable))):
            returned_on = payment.value_date + timedelta(days=self.rng.randint(2, 5))
            self._return(payment, returned_on, self.rng.choice(reasons))
            grant = payment.grant
            if self.rng.random() < 0.25:
                self._revoke(grant, "退票后复核：劳动合同已解除，不符合申领条件，撤销补贴")
                grant.talent.settling_in = None
                continue
            repaid_on = payment.value_date + timedelta(days=self.rng.randint(12, 20))
            self._pay(fy, grant, payment.amount, repaid_on)

    # --- housing ----------------------------------------------------------------

    def _waivers(self, fy: _Year) -> None:
        """Free rent for each housed talent, one waiver per fund year, for 3 years."""
        year = fy.year
        for talent in self._active(year):
            if not talent.housed or talent.apartment is None:
                continue
            if year - talent.arrived_on.year >= WAIVER_YEARS:
                talent.housed = False
                continue
            start = talent.arrived_on if talent.arrived_on.year == year else date(year, 1, 1)
            end = date(year, 12, 31)
            rent = BUILDINGS[talent.apartment.split()[0]]
            months = (end.year - start.year) * 12 + end.month - start.month + 1
            waiver_id = self._next(f"W-{year}", 3)
            fy.committed["housing"] += rent * months
            fy.waivers[talent.talent_id] = (waiver_id, start)
            command = GrantWaiver(
                waiver_id, talent.talent_id, year, "housing", talent.apartment, start, end, rent
            )
            self.steps.append((CLERK, command))

    def _end_waiver(self, fy: _Year, talent: _Talent, ended_on: date) -> None:
        waiver_id, start = fy.waivers[talent.talent_id]
        self.steps.append((CLERK, EndWaiver(waiver_id, max(ended_on, start))))
        talent.housed = False

    # --- departures and clawbacks -----------------------------------------------

    def _departures(self, fy: _Year, leaving: dict[str, date]) -> None:
        reasons = (
            "个人原因辞职",
            "调往外地工作",
            "出国深造",
            "家庭原因离开本市",
            "与用人单位协商解除劳动合同",
        )
        for talent in self.talents:
            departed_on = leaving.get(talent.talent_id)
            if departed_on is None:
                continue
            talent.departed_on = departed_on
            reason = self.rng.choice(reasons)
            self.steps.append((CLERK, DepartTalent(talent.talent_id, departed_on, reason)))
            if talent.talent_id in fy.waivers:
                self._end_waiver(fy, talent, departed_on)
            for grant in talent.projects:
                if grant.net_paid < grant.amount:
                    self._revoke(grant, "项目负责人离开本市，项目终止，剩余资金不再拨付")
        stayers = [
            t
            for t in self._active(fy.year)
            if t.housed and t.talent_id in fy.waivers and t.arrived_on.year < fy.year
        ]
        for talent in self.rng.sample(stayers, min(2, len(stayers))):
            talent.owns_home = True  # moved out into a home of their own
            self._end_waiver(fy, talent, self._between(date(fy.year, 3, 1), date(fy.year, 11, 30)))

    def _clawbacks(self, fy: _Year, leaving: dict[str, date]) -> None:
        """Settling-in allowances repaid in proportion to the service not given."""
        for talent in self.talents:
            departed_on = leaving.get(talent.talent_id)
            grant = talent.settling_in
            if departed_on is None or grant is None or self.rng.random() < 0.25:
                continue  # nothing paid, or not assessed yet: an auditor's exception
            promised = (talent.service_commitment_until - talent.arrived_on).days
            unserved = (talent.service_commitment_until - departed_on).days
            amount = _whole_yuan(grant.net_paid * unserved / promised)
            clawback_id = self._next(f"C-{fy.year}", 3)
            reason = (
                f"服务期未满（承诺至{talent.service_commitment_until.isoformat()}，"
                f"{departed_on.isoformat()}离职），按未服务期限比例退回安家补贴"
            )
            self.steps.append((CLERK, AssessClawback(clawback_id, grant.grant_id, amount, reason)))
            draw = self.rng.random()
            if draw < 0.2:
                continue  # still due
            recovered = amount if draw >= 0.4 else _whole_yuan(amount / 2)  # first instalment
            value_date = min(
                departed_on + timedelta(days=self.rng.randint(15, 60)), date(fy.year, 12, 31)
            )
            recovery = RecordRecovery(
                clawback_id,
                self._next(f"R-{fy.year}", 3),
                recovered,
                value_date,
                self._bank_reference(value_date),
            )
            self.steps.append((TREASURY, recovery))

    # --- rent subsidies -----------------------------------------------------------

    def _rent_subsidies(self, fy: _Year) -> None:
        """The December run: a year of rent subsidy for each of the year's arrivals.

        The last fund year's run stops at the published total: its last grant is the
        remainder, and later applicants wait for the next year's first run.
        """
        year = fy.year
        last_year = year == YEARS[-1]
        due = [
            t
            for t in self._active(year)
            if t.arrived_on.year == year
            and t.category in RENT_PER_MONTH
            and t.apartment is None
            and not t.owns_home
        ]
        remaining = PUBLISHED_CASH_PAID - self.cash_paid
        if last_year:
            runnable = sum((RENT_PER_MONTH[t.category] for t in due), ZERO) * RENT_SUBSIDY_MONTHS
            if not ZERO < remaining <= runnable:
                raise RuntimeError(f"the demo cannot end on {PUBLISHED_CASH_PAID}: {remaining}")
        paid_on = date(year, 12, self.rng.randint(16, 22))
        policy = self._policy(year, "第六条")
        for talent in due:
            rate = RENT_PER_MONTH[talent.category]
            amount = rate * RENT_SUBSIDY_MONTHS
            reason = f"首年租房补贴（{RENT_SUBSIDY_MONTHS}个月，每月{rate}元）"
            draw = self.rng.random()
            if last_year:
                if remaining <= amount:
                    amount = remaining
                    reason = "首年租房补贴（本批次剩余额度，差额下批次发放）"
                draw = 1.0  # the closing run pays everything it approves
            grant = self._propose(fy, talent, "rent_subsidy", amount, policy, reason)
            if draw < 0.03:
                self._reject(grant, "未提供住房租赁合同备案证明")
                continue
            self._approve(grant)
            if draw < 0.06:
                self._revoke(grant, "发放前核查：已在本市购房，不符合租房补贴条件")
                talent.owns_home = True
                continue
            self._pay(fy, grant, amount, paid_on)
            if last_year:
                remaining -= amount
                if remaining == 0:
                    break

    # --- budget ------------------------------------------------------------------

    def _budget(self, fy: _Year, start: int, supplement_at: int) -> None:
        """Open the year with round appropriations that cover what its plan commits;
        rent subsidies get part of theirs as a supplementary budget before the run."""
        year = fy.year
        numbers = iter(sorted(self.rng.sample(range(5, 60), 5)))
        opening: list[Step] = [(ADMIN, OpenFundYear(year, CURRENCY))]
        supplement: list[Step] = []
        for number, (programme, (kind, step)) in enumerate(LINES.items(), start=1):
            headroom = Decimal(self.rng.randint(105, 125)) / 100
            amount = _round_up(max(fy.committed[programme] * headroom, FEN), step)
            reference = f"嘉财预〔{year}〕{next(numbers)}号"
            initial = _round_up(amount * Decimal("0.6"), step)
            if programme == "rent_subsidy" and year >= 2021 and initial < amount:
                # the run is topped up just before it starts, as mid-year budgets are
                extra = Appropriate(
                    year,
                    f"A-{year}-{len(LINES) + 1:02d}",
                    programme,
                    kind,
                    amount - initial,
                    f"嘉财预〔{year}〕{next(numbers) + 60}号（追加）",
                )
                supplement.append((ADMIN, extra))
                amount = initial
            appropriation = Appropriate(
                year, f"A-{year}-{number:02d}", programme, kind, amount, reference
            )
            opening.append((ADMIN, appropriation))
        self.steps[supplement_at:supplement_at] = supplement
        self.steps[start:start] = opening


def _years_after(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _whole_yuan(amount: Decimal) -> Decimal:
    """Rounded down, so that a share of an amount never exceeds it."""
    return amount.quantize(Decimal(1), ROUND_DOWN).quantize(FEN)


def _round_up(amount: Decimal, step: int) -> Decimal:
    units = (amount / step).to_integral_value(rounding=ROUND_CEILING)
    return (units * step).quantize(FEN)
